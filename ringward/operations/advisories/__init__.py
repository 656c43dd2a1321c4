"""Advisory operations: advisories (create, gate, publish), OpenVEX and KEV. No Prefect here."""
