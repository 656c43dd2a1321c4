"""Security advisories, CVSS v4 scoring, OpenVEX and CISA KEV: the pure rules and formats.

No I/O besides reading the vendored schema files shipped in ``schemas/`` (see its SOURCES.md).
"""
