"""Command-line front door. Command groups load lazily so `ringward release verify-package`
imports neither Prefect nor the HTTP stack."""
