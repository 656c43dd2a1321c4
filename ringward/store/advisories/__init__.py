"""Persistence of the advisories domain (KEV catalog, published advisories, OpenVEX per release,
KEV holds), on the versioned key/value table with compare-and-set."""
