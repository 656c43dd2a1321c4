"""Release operations: package, verify, air-gap bundles, smoke tests, upgrades."""
