"""`ringward keys ...`"""

from __future__ import annotations

from pathlib import Path

import typer

from ringward.cli.output import print_json
from ringward.operations.trust.keys import generate_keypair

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Generate Ed25519 signing keys.")


@app.command("generate")
def generate(
    private_key: Path = typer.Option(..., "--private-key", help="Where to write the PKCS#8 PEM private key (0600)."),
    public_key: Path = typer.Option(..., "--public-key", help="Where to write the SubjectPublicKeyInfo PEM."),
    json_output: bool = typer.Option(False, "--json", help="Print a machine-readable result."),
) -> None:
    """Create a new Ed25519 key pair; refuses to overwrite existing files."""
    public = generate_keypair(private_key, public_key)
    result = {"private_key": str(private_key), "public_key": str(public_key), "key_id": public.key_id,
              "public_key_sha256": public.pem_sha256}
    if json_output:
        print_json(result)
    else:
        typer.echo(f"wrote {private_key} (mode 0600) and {public_key}")
        typer.echo(f"key_id {public.key_id}")
