"""The daily verification flow on the shared Prefect test server (two small flow runs)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.evidence.bundle import write_evidence_bundle
from ringward.store import open_store
from tests.evidence.helpers import cli_process

pytestmark = pytest.mark.prefect
T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _seed(url: str, root: Path) -> None:
    with open_store(url) as store:
        store.append(EvidenceDraft(kind="plain", actor="a", payload={"n": 1}), now=T0)
        write_evidence_bundle(
            kind="release-package-verification",
            actor="ci",
            payload={"ok": True},
            files={"result.json": b"{}\n"},
            subject=EvidenceSubject(status="passed"),
            root=root,
            store=store,
            now=T0,
        )


def test_flow_records_the_same_evidence_as_the_cli_and_publishes_artifacts(
    prefect_server: None, ringward_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flows.verify_evidence_chain import verify_evidence_chain

    root = tmp_path / "evidence"
    first = tmp_path / "a" / "ringward.db"
    _seed(f"sqlite:///{first}", root)
    second = tmp_path / "b" / "ringward.db"
    second.parent.mkdir()
    shutil.copy(first, second)  # same chain, byte for byte (closed store: WAL checkpointed)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(root))
    monkeypatch.setenv("RINGWARD_ACTOR", "auditor")

    monkeypatch.setenv("RINGWARD_DATABASE_URL", f"sqlite:///{first}")
    assert cli_process("evidence", "verify", "--record").code == 0  # the real CLI, in its own process

    monkeypatch.setenv("RINGWARD_DATABASE_URL", f"sqlite:///{second}")
    state = verify_evidence_chain(return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["ok"] and result["records_checked"] == 2 and result["bundles_checked"] == 1

    with open_store(f"sqlite:///{first}") as a, open_store(f"sqlite:///{second}") as b:
        by_cli, by_flow = a.get_evidence(3), b.get_evidence(3)
    assert by_flow.flow_run_id == str(state.state_details.flow_run_id) and by_cli.flow_run_id is None
    assert (by_cli.kind, by_cli.actor, by_cli.subject, by_cli.payload) == (
        by_flow.kind,
        by_flow.actor,
        by_flow.subject,
        by_flow.payload,
    )
    markdown = Artifact.get("evidence-chain-verification")
    assert markdown is not None and "INTACT" in str(markdown.data)
    assert Artifact.get("evidence-chain-verification-summary") is not None


def test_flow_fails_and_reports_the_break(
    prefect_server: None, ringward_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flows.verify_evidence_chain import verify_evidence_chain

    url = f"sqlite:///{tmp_path / 'ringward.db'}"
    _seed(url, tmp_path / "evidence")
    with open_store(url) as store, store.writing() as conn:
        conn.execute(sa.text("UPDATE evidence_record SET actor = 'mallory' WHERE id = 1"))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", url)
    state = verify_evidence_chain(evidence_root=str(tmp_path / "evidence"), return_state=True)
    assert state.is_failed()
    markdown = Artifact.get("evidence-chain-verification")
    assert markdown is not None and "BROKEN" in str(markdown.data) and "record_hash" in str(markdown.data)
    with open_store(url) as store:
        recorded = store.get_evidence(3)
    assert recorded.kind == "evidence-chain-verification" and recorded.subject.success is False
    assert recorded.payload["first_break"]["record_id"] == 1


def test_intact_chain_is_checkpointed_and_sent_to_the_siem_broken_one_never(
    prefect_server: None, ringward_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpserver: Any
) -> None:
    import json

    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from flows.verify_evidence_chain import verify_evidence_chain
    from ringward.core.evidence.checkpoint import Checkpoint, verify_checkpoint_signature
    from ringward.core.trust.keys import load_public_key_raw

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    monkeypatch.setenv("RINGWARD_SIGNING_KEY", pem.decode())
    monkeypatch.setenv("RW_FLOW_HEC", "hec-flow-token-4e1f")
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    config = tmp_path / "connectors.yaml"
    config.write_text(yaml.safe_dump({"providers": [{
        "name": "soc", "provider": "splunk", "url": httpserver.url_for("/services/collector/event"),
        "token": "env:RW_FLOW_HEC"}]}))
    url = f"sqlite:///{tmp_path / 'ringward.db'}"
    _seed(url, tmp_path / "evidence")
    monkeypatch.setenv("RINGWARD_DATABASE_URL", url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(tmp_path / "evidence"))

    state = verify_evidence_chain(
        checkpoint_dir=str(tmp_path / "checkpoints"), deliver_checkpoint_config=str(config), return_state=True
    )
    assert state.is_completed(), state
    made = state.result()["checkpoint"]
    assert made["delivery"]["success"] is True
    written = Checkpoint.model_validate_json(Path(made["path"]).read_text())
    assert written.head_id == 2  # the head the run verified (its own verification record comes after)
    pinned = load_public_key_raw(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), source="pin"
    )
    verify_checkpoint_signature(written, {pinned.key_id: pinned.key}, source="flow checkpoint")
    (request, _), = httpserver.log
    assert json.loads(request.get_data())["event"]["attributes"]["checkpoint"] == written.to_document()

    # a broken chain: the run fails and nothing new is signed or sent
    with open_store(url) as store, store.writing() as conn:
        conn.execute(sa.text("UPDATE evidence_record SET actor = 'mallory' WHERE id = 1"))
    broken = verify_evidence_chain(
        checkpoint_dir=str(tmp_path / "checkpoints"), deliver_checkpoint_config=str(config), return_state=True
    )
    assert broken.is_failed()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [Path(made["path"]).name]
    assert len(httpserver.log) == 1
