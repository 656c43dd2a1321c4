"""`remediation handoff` (only after approval and execution, through the connector platform to real
loopback receivers, idempotent by handoff id) and `remediation status` (§9.4 transitions, persisted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from ringward.core.errors import ApprovalStateError, InputError, NotFoundError, StateError
from ringward.core.remediation.handoff_build import KIND_HANDOFF, KIND_STATUS
from ringward.operations.remediation.remediation_ops import handoff_remediation, record_handoff_status
from ringward.store.remediation.state import HANDOFFS, STATUSES, RemediationStateRepository
from tests.inventory.conftest import records
from tests.remediation.conftest import RemediationWorld, at

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receivers(httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RW_HANDOFF_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("RW_HANDOFF_SLACK_URL", httpserver.url_for("/services/T0/B0/slacksecretpath"))
    httpserver.expect_request("/remediation/hook", method="POST").respond_with_data("", status=204)
    httpserver.expect_request("/services/T0/B0/slacksecretpath", method="POST").respond_with_data("ok")
    config = tmp_path / "connectors.yaml"
    config.write_text(yaml.safe_dump({
        "defaults": {"backoff_base_seconds": 0.01, "timeout_seconds": 5.0},
        "providers": [
            {"name": "hook", "provider": "webhook", "url": httpserver.url_for("/remediation/hook"),
             "signing_secret": "env:RW_HANDOFF_WEBHOOK_SECRET"},
            {"name": "chat", "provider": "slack", "url": "env:RW_HANDOFF_SLACK_URL"},
        ],
    }))
    return config


def _handoff(rw: RemediationWorld, source: str | Path, config: Path, *, providers: str = "webhook,slack",
             now: Any = None) -> dict[str, Any]:
    return handoff_remediation(rw.store, source=Path(source), providers=providers, config=config, actor="carol",
                               now=now or at(5))


def _posts(server: HTTPServer, path: str) -> list[Any]:
    return [request for request, _ in server.log if request.path == path]


def test_handoff_before_approval_is_refused_and_nothing_is_sent(rw: RemediationWorld, receivers: Path,
                                                                httpserver: HTTPServer) -> None:
    requested = rw.request(rw.reconciliation())
    with pytest.raises(ApprovalStateError, match="handoff refused before approval"):
        _handoff(rw, requested["request"], receivers)
    rw.approve(requested["approval_id"])  # approved but not executed: still refused
    with pytest.raises(ApprovalStateError, match="status open"):
        _handoff(rw, requested["request"], receivers)
    assert httpserver.log == []
    refused = [r for r in records(rw.store, KIND_HANDOFF) if r.subject.status == "refused"]
    assert len(refused) == 2


def test_handoff_delivers_once_and_records_statuses(rw: RemediationWorld, receivers: Path,
                                                    httpserver: HTTPServer) -> None:
    requested, executed = rw.executed()
    result = _handoff(rw, executed["execution"], receivers)
    assert result["failed_providers"] == [] and result["repeat"] is False
    assert result["statuses"] == {"webhook": "delivered", "slack": "delivered"}
    (hook,) = _posts(httpserver, "/remediation/hook")
    body = json.loads(hook.get_data())
    assert body["data"]["event_id"] == result["handoff_id"]
    attributes = body["data"]["attributes"]
    assert attributes["approval_id"] == requested["approval_id"]
    assert attributes["execution_guard"]["private_connector_must_recheck_approval"] is True
    assert len(attributes["work_items"]) == 5
    assert len(_posts(httpserver, "/services/T0/B0/slacksecretpath")) == 1
    handoff = rw.load(Path(result["output_dir"]) / "endpoint-remediation-handoff.json")
    assert handoff["schema_version"] == "cavra.endpoint-remediation-handoff.v1"
    assert handoff["approval_required"] is False and handoff["approval_state"] == "approved"
    assert set(handoff["payloads"]) == {"webhook", "slack"}
    assert handoff["payloads"]["webhook"]["queue_event"]["dedupe_key"] == result["handoff_id"]
    assert (Path(result["output_dir"]) / "webhook-handoff.json").is_file()
    # the same handoff again (from the request file this time): same id, nothing sent twice
    again = _handoff(rw, requested["request"], receivers, now=at(6))
    assert again["handoff_id"] == result["handoff_id"] and again["repeat"] is True
    assert len(_posts(httpserver, "/remediation/hook")) == 1
    assert len(_posts(httpserver, "/services/T0/B0/slacksecretpath")) == 1
    repo = RemediationStateRepository(rw.store)
    assert repo.get(HANDOFFS, result["handoff_id"]) is not None
    assert len(repo.list(STATUSES)) == 2
    handed = [r for r in records(rw.store, KIND_HANDOFF) if r.subject.status == "handed-off"]
    assert [r.payload["repeat"] for r in handed] == [False, True]
    # secrets of the connector config never reach the evidence
    for record in records(rw.store, "release-connector-delivery") + handed:
        text = json.dumps(record.payload)
        assert WEBHOOK_SECRET not in text and "slacksecretpath" not in text


def test_failed_delivery_stays_queued(rw: RemediationWorld, tmp_path: Path, httpserver: HTTPServer,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RW_HANDOFF_WEBHOOK_SECRET", WEBHOOK_SECRET)
    httpserver.expect_request("/down", method="POST").respond_with_data("no", status=400)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"providers": [
        {"name": "hook", "provider": "webhook", "url": httpserver.url_for("/down"),
         "signing_secret": "env:RW_HANDOFF_WEBHOOK_SECRET"}]}))
    _requested, executed = rw.executed()
    result = _handoff(rw, executed["execution"], config, providers="webhook")
    assert result["failed_providers"] == ["webhook"] and result["statuses"] == {"webhook": "queued"}


def test_unconfigured_or_unknown_provider_is_bad_input(rw: RemediationWorld, receivers: Path) -> None:
    _requested, executed = rw.executed()
    with pytest.raises(InputError, match="not configured"):
        _handoff(rw, executed["execution"], receivers, providers="jira")
    with pytest.raises(InputError, match="provider must be one of"):
        _handoff(rw, executed["execution"], receivers, providers="pagerduty")


def _status(rw: RemediationWorld, handoff: str, status: str, *, provider: str = "webhook", hours: float = 6,
            **extra: Any) -> dict[str, Any]:
    return record_handoff_status(rw.store, handoff=handoff, provider=provider, status=status, actor="ops",
                                 now=at(hours), **extra)


def test_status_transitions_are_enforced_and_persisted(rw: RemediationWorld, receivers: Path) -> None:
    _requested, executed = rw.executed()
    handoff_id = _handoff(rw, executed["execution"], receivers)["handoff_id"]
    assert _status(rw, handoff_id, "acknowledged", external_ref="Q-1")["previous_status"] == "delivered"
    assert _status(rw, handoff_id, "in_progress", hours=7)["previous_status"] == "acknowledged"
    with pytest.raises(StateError, match="queued cannot follow in_progress"):
        _status(rw, handoff_id, "queued", hours=7.5)
    done = _status(rw, handoff_id, "completed", hours=8, note="all endpoints fixed")
    assert done["final"] is True
    for later in ("in_progress", "failed", "queued", "completed"):
        with pytest.raises(StateError, match="completed is final"):
            _status(rw, handoff_id, later, hours=9)
    # the other provider's work item has its own sequence; a handoff file works as the reference too
    handoff_file = Path.cwd() / "endpoint-remediation-handoff" / handoff_id / "endpoint-remediation-handoff.json"
    assert _status(rw, str(handoff_file), "cancelled", provider="slack", hours=9)["final"] is True
    entry = RemediationStateRepository(rw.store).get(STATUSES, f"{handoff_id}/webhook")
    assert entry is not None and entry.value["status"]["status"] == "completed"
    assert len(entry.value["history"]) == 4  # delivered, acknowledged, in_progress, completed
    statuses = records(rw.store, KIND_STATUS)
    assert [r.subject.status for r in statuses].count("refused") == 5
    recorded = [r.payload["handoff_status"] for r in statuses if r.subject.status != "refused"]
    assert recorded == ["delivered", "delivered", "acknowledged", "in_progress", "completed", "cancelled"]


def test_status_refusals(rw: RemediationWorld, receivers: Path) -> None:
    with pytest.raises(NotFoundError):
        _status(rw, "erh_000000000000", "delivered")
    with pytest.raises(InputError, match="handoff id"):
        _status(rw, "no-such-file.json", "delivered")
    _requested, executed = rw.executed()
    handoff_id = _handoff(rw, executed["execution"], receivers, providers="webhook")["handoff_id"]
    with pytest.raises(InputError, match="not present in the handoff"):
        _status(rw, handoff_id, "acknowledged", provider="slack")
    with pytest.raises(InputError, match="status must be one of"):
        _status(rw, handoff_id, "done")


def test_handoff_and_status_files_feed_the_sla_report(rw: RemediationWorld, receivers: Path) -> None:
    from ringward.operations.sla.sla_ops import load_handoffs

    _requested, executed = rw.executed()
    handed = _handoff(rw, executed["execution"], receivers)
    recorded = _status(rw, handed["handoff_id"], "blocked", note="waiting for a maintenance window")
    handoffs, statuses = load_handoffs([Path(handed["output_dir"]) / "endpoint-remediation-handoff.json",
                                        Path(recorded["status_file"])])
    assert [h.handoff_id for h in handoffs] == [handed["handoff_id"]]
    assert [(s.provider.value, s.status.value) for s in statuses] == [("webhook", "blocked")]
    handoffs[0].check_id()
    statuses[0].check_id()


def test_unrecorded_request_cannot_be_handed_off(rw: RemediationWorld, receivers: Path, tmp_path: Path) -> None:
    requested = rw.request(rw.reconciliation())
    foreign = {**rw.load(requested["request"]), "request_id": "err_000000000000"}
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(foreign))
    with pytest.raises(NotFoundError, match="not recorded"):
        _handoff(rw, path, receivers)
    path.write_text(json.dumps({"schema_version": "something.else", "request_id": "err_000000000000"}))
    with pytest.raises(InputError, match="schema_version expected"):
        _handoff(rw, path, receivers)
