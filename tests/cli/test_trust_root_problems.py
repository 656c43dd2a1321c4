"""A malformed trust root names every problem in its one error line, not only the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringward.core.errors import ConfigError
from ringward.core.trust.keys import load_public_key_pem
from ringward.core.trust.root import Role, TrustedKey, TrustRoot, parse_trust_root
from ringward.operations.trust.keys import generate_keypair


def _key(tmp_path: Path, name: str) -> TrustedKey:
    if not (tmp_path / f"{name}.pub").exists():
        generate_keypair(tmp_path / f"{name}.pem", tmp_path / f"{name}.pub")
    pem = (tmp_path / f"{name}.pub").read_bytes()
    public = load_public_key_pem(pem, source=name)
    return TrustedKey(
        key_id=public.key_id,
        label=name,
        roles=("release",),  # type: ignore[arg-type]
        public_key_pem=pem.decode("ascii"),
        public_key_sha256=public.pem_sha256,
    )


def _document(tmp_path: Path) -> dict[str, object]:
    root = TrustRoot(updated_at="2026-12-01T00:00:00Z", keys=(_key(tmp_path, "a"),))  # type: ignore[arg-type]
    return json.loads(root.model_dump_json())  # type: ignore[no-any-return]


def test_every_schema_problem_is_listed_in_one_line(tmp_path: Path) -> None:
    document = _document(tmp_path)
    document["version"] = 0
    document["colour"] = "blue"
    key = document["keys"][0]  # type: ignore[index]
    key["key_id"] = "xyz"
    del key["label"]
    key["roles"] = ["release", "janitor"]

    with pytest.raises(ConfigError) as caught:
        parse_trust_root(json.dumps(document).encode(), source="trust.json")

    message = caught.value.message
    assert "\n" not in message
    assert message.startswith("trust.json: 5 problems: "), message
    for fragment in (
        "version: Input should be greater than or equal to 1, found 0",
        "keys.0.key_id: String should match pattern '^[0-9a-f]{64}$', found 'xyz'",
        "keys.0.label: Field required",
        "keys.0.roles.1: Input should be 'release', 'promotion', 'remediation', 'advisory' or 'root', found 'janitor'",
        "colour: Extra inputs are not permitted, found 'blue'",
    ):
        assert fragment in message, (fragment, message)


def test_every_consistency_and_key_problem_is_listed(tmp_path: Path) -> None:
    document = _document(tmp_path)
    document["keys"] = [document["keys"][0], document["keys"][0]]  # type: ignore[index]
    document["thresholds"] = {"release": 0, "promotion": -1}
    with pytest.raises(ConfigError) as caught:
        parse_trust_root(json.dumps(document).encode(), source="trust.json")
    message = caught.value.message
    assert message.startswith("trust.json: 1 problem: "), message
    assert "is listed twice" in message
    assert "thresholds.release: expected >= 1, found 0" in message
    assert "thresholds.promotion: expected >= 1, found -1" in message

    document = _document(tmp_path)
    other = _key(tmp_path, "b").model_dump(mode="json")
    first = document["keys"][0]  # type: ignore[index]
    first["public_key_sha256"] = "0" * 64
    other["key_id"] = "f" * 64
    document["keys"] = [first, other]
    with pytest.raises(ConfigError) as caught:
        parse_trust_root(json.dumps(document).encode(), source="trust.json")
    message = caught.value.message
    assert message.startswith("trust.json: 2 problems: "), message
    assert "trust root key 'a': public_key_sha256 does not match its PEM" in message
    assert "trust root key 'b': key_id " + "f" * 64 + " does not match its public key" in message


def test_cli_prints_the_problems_in_one_line_with_exit_2(tmp_path: Path) -> None:
    document = _document(tmp_path)
    document["version"] = 0
    document["schema_version"] = "ringward.trust-root.v0"
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(document))
    done = subprocess.run(
        [sys.executable, "-m", "ringward", "trust", "show", "--trust-root", str(path)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("RINGWARD_TRUST")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "2 problems" in lines[0] and "schema_version" in lines[0] and "version: Input should be" in lines[0]


def test_a_root_key_that_also_has_another_role_is_refused(tmp_path: Path) -> None:
    document = _document(tmp_path)
    document["keys"][0]["roles"] = ["root", "release"]  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        parse_trust_root(json.dumps(document).encode(), source="trust.json")
    message = caught.value.message
    assert "expected the root role alone, found root with release" in message and "\n" not in message
    document["keys"][0]["roles"] = ["root"]  # type: ignore[index]
    assert parse_trust_root(json.dumps(document).encode(), source="trust.json").keys_for(Role.ROOT)
