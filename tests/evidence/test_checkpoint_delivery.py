"""`ringward evidence checkpoint --deliver`: the signed head also goes to a SIEM the SOC runs.

A real HTTP server on loopback plays Splunk HEC; the checkpoint it receives must verify against the
pinned key on its own, a re-sent checkpoint must not be delivered twice, and a failed delivery must
say so (exit 1) without losing the checkpoint file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer

from connectors.auth import TOKENS
from ringward.core.evidence.checkpoint import Checkpoint, verify_checkpoint_signature
from ringward.operations.evidence.evidence_ops import checkpoint_trusted_keys
from ringward.store import open_store
from tests.evidence.helpers import cli, one_error_line
from tests.evidence.test_evidence_checkpoint import keys  # noqa: F401  (fixture)

HEC_TOKEN = "hec-checkpoint-token-5f0c9d2e7a"


@pytest.fixture(autouse=True)
def _fresh_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    TOKENS.clear()
    monkeypatch.setenv("RW_CHECKPOINT_HEC", HEC_TOKEN)


def _config(tmp_path: Path, server: HTTPServer, **extra: object) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"timeout_seconds": 2, "budget_seconds": 5, "max_attempts": 2, "backoff_base_seconds": 0},
                "providers": [
                    {
                        "name": "soc-splunk",
                        "provider": "splunk",
                        "url": server.url_for("/services/collector/event"),
                        "token": "env:RW_CHECKPOINT_HEC",
                        **extra,
                    }
                ],
            }
        )
    )
    return path


def _checkpoint(
    capsys: pytest.CaptureFixture[str], keys: dict[str, Path], output: Path, config: Path, *extra: str  # noqa: F811
) -> object:
    return cli(
        capsys,
        "evidence",
        "checkpoint",
        "--signing-key",
        str(keys["signer"]),
        "--output",
        str(output),
        "--trust-root",
        str(keys["trust"]),
        "--deliver",
        str(config),
        *extra,
    )


def test_checkpoint_is_delivered_to_the_siem_and_verifies_there(
    keys: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(
        "/services/collector/event", method="POST", headers={"Authorization": f"Splunk {HEC_TOKEN}"}
    ).respond_with_json({"text": "Success", "code": 0})
    output = tmp_path / "checkpoint.json"
    result = _checkpoint(capsys, keys, output, _config(tmp_path, httpserver), "--json")
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    document = json.loads(result.out)  # type: ignore[attr-defined]
    assert document["delivery"]["success"] is True
    assert [d["status"] for d in document["delivery"]["deliveries"]] == ["delivered"]

    (request, _), = httpserver.log
    record = json.loads(request.get_data())
    assert record["event"]["event_type"] == "ringward.evidence.checkpoint"
    received = Checkpoint.model_validate(record["event"]["attributes"]["checkpoint"])
    # what the SIEM holds is the same signed head as the file, and it verifies on its own
    assert received == Checkpoint.model_validate_json(output.read_text())
    trusted = checkpoint_trusted_keys(trust_root=keys["trust"])
    verify_checkpoint_signature(received, trusted, source="siem copy")
    assert received.head_id == 5
    # the delivery itself is evidence, and the HEC token is in none of it
    with open_store() as store:
        stored = store.get_evidence(document["delivery"]["evidence_id"])
    assert stored.kind == "release-connector-delivery"
    assert HEC_TOKEN not in json.dumps(stored.payload)


def test_same_checkpoint_is_not_sent_twice(
    keys: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    config = _config(tmp_path, httpserver)
    first = _checkpoint(capsys, keys, tmp_path / "a.json", config)
    assert first.code == 0 and "delivered" in first.out  # type: ignore[attr-defined]
    # the delivery evidence appended a record, so a new checkpoint covers a new head ...
    second = _checkpoint(capsys, keys, tmp_path / "b.json", config)
    assert second.code == 0  # type: ignore[attr-defined]
    assert len(httpserver.log) == 2
    heads = {json.loads(r.get_data())["event"]["attributes"]["checkpoint"]["head_id"] for r, _ in httpserver.log}
    assert heads == {5, 6}
    # ... while re-sending the same head (same event id) is refused by the delivery log
    from ringward.operations.delivery import delivery_ops
    from ringward.operations.evidence.evidence_ops import checkpoint_event

    again = checkpoint_event(Checkpoint.model_validate_json((tmp_path / "b.json").read_text()))
    with open_store() as store:
        run = delivery_ops.deliver_event(again, delivery_ops.load_connector_config(config), store=store)
    assert [r.status.value for r in run.results] == ["already-delivered"]
    assert len(httpserver.log) == 2


def test_failed_delivery_exits_1_and_keeps_the_checkpoint(
    keys: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/services/collector/event").respond_with_data("busy", status=503)
    output = tmp_path / "checkpoint.json"
    result = _checkpoint(capsys, keys, output, _config(tmp_path, httpserver))
    assert result.code == 1  # type: ignore[attr-defined]
    assert "NOT delivered" in result.out and "soc-splunk (splunk): failed" in result.out  # type: ignore[attr-defined]
    assert Checkpoint.model_validate_json(output.read_text()).head_id == 5
    assert len(httpserver.log) == 2  # max_attempts


def test_bad_connector_file_fails_before_signing(
    keys: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(yaml.safe_dump({"providers": [{"name": "x", "provider": "splunk", "url": "ftp://siem"}]}))
    output = tmp_path / "checkpoint.json"
    result = _checkpoint(capsys, keys, output, config)
    one_error_line(result, 2, "providers[0].url")  # type: ignore[arg-type]
    assert not output.exists()


def test_a_broken_chain_is_never_signed(
    keys: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sqlalchemy as sa

    with open_store() as store, store.writing() as conn:
        conn.execute(sa.text("UPDATE evidence_record SET actor = 'mallory' WHERE id = 2"))
    output = tmp_path / "checkpoint.json"
    result = cli(
        capsys, "evidence", "checkpoint", "--signing-key", str(keys["signer"]), "--output", str(output),
        "--trust-root", str(keys["trust"]),
    )
    assert result.code == 1 and "refusing to sign a checkpoint of a broken chain" in result.err  # type: ignore[attr-defined]
    assert not output.exists()


def test_a_head_rewritten_after_verification_is_not_signed(keys: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    import sqlalchemy as sa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from ringward.core.errors import EvidenceIntegrityError
    from ringward.operations.evidence import evidence_ops
    key = load_pem_private_key(keys["signer"].read_bytes(), password=None)
    with open_store() as store:
        verified = evidence_ops.verify_evidence(store, check_files=False)
        assert verified.ok and verified.head_id == 5
        with store.writing() as conn:
            conn.execute(sa.text("UPDATE evidence_record SET record_hash = :h WHERE id = 5"), {"h": "0" * 64})
        with pytest.raises(EvidenceIntegrityError, match="since verification"):
            evidence_ops.create_checkpoint(
                store, private_key=key, actor="a", output=tmp_path / "cp.json", verified=verified  # type: ignore[arg-type]
            )
    assert not (tmp_path / "cp.json").exists()
