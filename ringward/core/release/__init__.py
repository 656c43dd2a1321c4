"""Release packages: building, the reference file formats, verification rules, upgrades."""
