"""Signed checkpoints of the chain head: history rewrites and truncation after a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from ringward.core.evidence.records import EvidenceDraft
from ringward.store import open_store
from tests.evidence.helpers import cli, one_error_line


@pytest.fixture
def keys(cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    out = {}
    for name in ("signer", "stranger"):
        result = cli(
            capsys,
            "keys",
            "generate",
            "--private-key",
            str(tmp_path / f"{name}.pem"),
            "--public-key",
            str(tmp_path / f"{name}.pub"),
        )
        assert result.code == 0, result.err
        out[name] = tmp_path / f"{name}.pem"
        out[f"{name}.pub"] = tmp_path / f"{name}.pub"
    trust = tmp_path / "trust-root.json"
    assert cli(capsys, "trust", "init", "--output", str(trust), "--key", f"release={out['signer.pub']}").code == 0
    out["trust"] = trust
    with open_store() as store:
        store.append_many([EvidenceDraft(kind="plain", actor="a", payload={"n": n}) for n in range(5)])
    return out


def _checkpoint(capsys: pytest.CaptureFixture[str], keys: dict[str, Path], tmp_path: Path, key: str = "signer") -> Path:
    output = tmp_path / "checkpoint.json"
    result = cli(
        capsys,
        "evidence",
        "checkpoint",
        "--signing-key",
        str(keys[key]),
        "--output",
        str(output),
        "--trust-root",
        str(keys["trust"]),
    )
    assert result.code == 0, result.err
    return output


def _verify(capsys: pytest.CaptureFixture[str], checkpoint: Path, *extra: str) -> object:
    return cli(capsys, "evidence", "verify", "--checkpoint", str(checkpoint), *extra)


def test_checkpoint_round_trip(keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _checkpoint(capsys, keys, tmp_path)
    doc = json.loads(checkpoint.read_text())
    assert doc["schema_version"] == "ringward.evidence-checkpoint.v1" and doc["head_id"] == 5
    assert doc["signature"]["algorithm"] == "Ed25519"
    result = _verify(capsys, checkpoint, "--trust-root", str(keys["trust"]))
    assert result.code == 0 and "checkpoint: record 5 matches" in result.out  # type: ignore[attr-defined]
    # later appends keep the checkpoint valid
    with open_store() as store:
        store.append(EvidenceDraft(kind="plain", actor="a", payload={"n": 99}))
    assert _verify(capsys, checkpoint, "--public-key", str(keys["signer.pub"])).code == 0  # type: ignore[attr-defined]


def test_consistent_history_rewrite_is_caught_only_with_a_checkpoint(
    keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker edits record 2 and re-hashes the whole chain: the bare chain verifies again,
    the signed checkpoint does not."""
    checkpoint = _checkpoint(capsys, keys, tmp_path)
    with open_store() as store, store.writing() as conn:
        conn.execute(sa.text("UPDATE evidence_record SET actor = 'mallory' WHERE id = 2"))
        rows = conn.execute(sa.text("SELECT id FROM evidence_record ORDER BY id")).all()
        previous = "0" * 64
        for (record_id,) in rows:
            record = store_record(conn, record_id).model_copy(update={"previous_hash": previous})
            digest = record.expected_hash()
            conn.execute(
                sa.text("UPDATE evidence_record SET previous_hash = :p, record_hash = :h WHERE id = :i"),
                {"p": previous, "h": digest, "i": record_id},
            )
            previous = digest
        conn.execute(sa.text("UPDATE evidence_head SET last_hash = :h"), {"h": previous})
    assert cli(capsys, "evidence", "verify").code == 0
    result = _verify(capsys, checkpoint, "--trust-root", str(keys["trust"]))
    assert result.code == 1 and "record 5: checkpoint head hash" in result.out  # type: ignore[attr-defined]


def store_record(conn: sa.Connection, record_id: int):  # type: ignore[no-untyped-def]
    from ringward.store.evidence.repo import get_record

    return get_record(conn, record_id)


def test_truncation_below_the_checkpoint_is_caught(
    keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _checkpoint(capsys, keys, tmp_path)
    with open_store() as store, store.writing() as conn:
        conn.execute(sa.text("DELETE FROM evidence_record WHERE id >= 4"))
        row = conn.execute(sa.text("SELECT record_hash, created_at FROM evidence_record WHERE id = 3")).one()
        conn.execute(sa.text("UPDATE evidence_head SET last_id = 3, last_hash = :h"), {"h": row[0]})
    assert cli(capsys, "evidence", "verify").code == 0  # the cut is invisible to the bare chain
    result = _verify(capsys, checkpoint, "--trust-root", str(keys["trust"]))
    assert result.code == 1 and "checkpoint head" in result.out  # type: ignore[attr-defined]


def test_checkpoint_from_an_untrusted_key_is_refused(
    keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = cli(
        capsys,
        "evidence",
        "checkpoint",
        "--signing-key",
        str(keys["stranger"]),
        "--output",
        str(tmp_path / "cp.json"),
        "--trust-root",
        str(keys["trust"]),
    )
    one_error_line(refused, 1, "is not an active release key")
    assert not (tmp_path / "cp.json").exists()
    forged = tmp_path / "forged.json"
    assert (
        cli(capsys, "evidence", "checkpoint", "--signing-key", str(keys["stranger"]), "--output", str(forged)).code == 0
    )
    one_error_line(_verify(capsys, forged, "--trust-root", str(keys["trust"])), 1, "not among the 1 trusted key")  # type: ignore[arg-type]


def test_edited_checkpoint_fails_its_signature(
    keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _checkpoint(capsys, keys, tmp_path)
    doc = json.loads(checkpoint.read_text())
    doc["head_id"] = 2
    checkpoint.write_text(json.dumps(doc))
    one_error_line(_verify(capsys, checkpoint, "--trust-root", str(keys["trust"])), 1, "signature does not verify")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('{"schema_version": "other"}', "schema_version"),
        ('{"a": 1, "a": 2}', "duplicate key"),
    ],
)
def test_malformed_checkpoint_files(
    keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    one_error_line(_verify(capsys, bad, "--trust-root", str(keys["trust"])), 1, fragment)  # type: ignore[arg-type]


def test_checkpoint_usage_errors(keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _checkpoint(capsys, keys, tmp_path)
    again = cli(capsys, "evidence", "checkpoint", "--signing-key", str(keys["signer"]), "--output", str(checkpoint))
    one_error_line(again, 2, "refusing to overwrite")
    one_error_line(cli(capsys, "evidence", "checkpoint", "--output", str(tmp_path / "x.json")), 2, "--signing-key")
    one_error_line(_verify(capsys, checkpoint), 2, "--trust-root or --public-key")  # type: ignore[arg-type]
    one_error_line(_verify(capsys, checkpoint, "--trust-root", str(keys["trust"]), "--role", "janitor"), 2, "--role")  # type: ignore[arg-type]
    one_error_line(_verify(capsys, tmp_path / "missing.json", "--public-key", str(keys["signer.pub"])), 2, "not found")  # type: ignore[arg-type]
