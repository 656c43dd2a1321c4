"""Persistence of the incidents domain on the versioned key/value table with compare-and-set."""
