"""``POST /sla/acknowledgements`` and ``GET /sla/escalations`` over a real store, the recorded
report and the configured routing policy; sends go to loopback servers through the real connector
platform, so "the next evaluation sends nothing" is what the receivers saw."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from ringward.api.app import create_app
from ringward.core.common.roles import Role
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.sla.history import Acknowledged, AckRefused
from ringward.operations.delivery.delivery_ops import DeliveryHooks, load_connector_config
from ringward.operations.sla import sla_ops
from ringward.store import Store
from ringward.store.sla.ledger import SlaLedger
from tests.api.conftest import Clock
from tests.connectors.conftest import FakeClock, write_config
from tests.connectors.fault_server import FaultServer, Route
from tests.sla.factory import handoff, status
from tests.sla.test_time_travel import BREACH, ladder_policy

M = timedelta(minutes=1)
ACK_AT = BREACH + 10 * M
#: token name -> role. endpoint-ops owns route "critical"; alice and dave are its members;
#: root is a policy admin; carol holds an admin token; bob and eve are strangers.
TOKENS = {
    "endpoint-ops": Role.OPERATOR,
    "alice": Role.APPROVER,
    "dave": Role.VIEWER,
    "root": Role.OPERATOR,
    "carol": Role.ADMIN,
    "bob": Role.APPROVER,
    "eve": Role.OPERATOR,
}


@dataclass
class SlaApi:
    client: TestClient
    store: Store
    clock: Clock
    tokens: dict[str, str]
    routes: dict[str, Route]
    policy_path: Path
    config: Any

    def post(self, who: str, body: Any, path: str = "/sla/acknowledgements") -> Any:
        return self.client.post(path, headers={"Authorization": f"Bearer {self.tokens[who]}"}, json=body)

    def get(self, who: str, path: str = "/sla/escalations", **params: Any) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[who]}"}, params=params)

    def cycle(self, minutes: int) -> sla_ops.CycleResult:
        """The scheduled evaluation at BREACH + minutes, over the newest recorded report."""
        fake = FakeClock()
        return sla_ops.run_cycle(
            self.store,
            sla_ops.load_policy(self.policy_path),
            sla_ops.recorded_report(self.store),
            self.config,
            now=BREACH + minutes * M,
            hooks=DeliveryHooks(clock=fake, sleep=fake.sleep, rng=random.Random(3), flush_interval=0.01),
        )

    def history(self) -> list[Any]:
        return list(SlaLedger(self.store).history("endpoint-remediation"))

    def evidence(self, kind: str) -> list[Any]:
        return list(self.store.search_evidence(EvidenceQuery(kind=kind, limit=200)).items)


def _policy_document() -> dict[str, Any]:
    document = ladder_policy()
    document["owners"]["endpoint-ops"]["members"] = ["alice", "dave"]
    return document


@pytest.fixture
def sla_api(
    store: Store, tmp_path: Path, fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SlaApi]:
    routes = {name: fault_server.route() for name in ("slack-ops", "pager-ops", "jira-gov")}
    config = write_config(
        tmp_path / "connectors.yaml",
        *({"name": name, "provider": "linux", "url": route.url} for name, route in routes.items()),
        budget_seconds=5.0,
    )
    policy_path = tmp_path / "sla-routing.yaml"
    policy_path.write_text(yaml.safe_dump(_policy_document()))
    monkeypatch.setenv("RINGWARD_SLA_POLICY", str(policy_path))
    monkeypatch.setenv("RINGWARD_PROMOTION_ROOT", str(tmp_path))
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    # a handoff failed at BREACH (critical at once), written as files and recorded as a report
    h = handoff(1, created_at=BREACH - timedelta(hours=2))
    inputs = tmp_path / "handoffs"
    inputs.mkdir()
    (inputs / "handoff.json").write_text(json.dumps(h.model_dump(mode="json")))
    (inputs / "status.json").write_text(json.dumps(status(h, "failed", BREACH).model_dump(mode="json")))
    sla_ops.make_report([inputs], now=BREACH + M, store=store)
    clock = Clock(ACK_AT)
    tokens = {}
    for name, role in TOKENS.items():
        _, tokens[name] = store.tokens.create(name=name, role=role, created_by="test", now=BREACH - timedelta(days=1))
    client = TestClient(create_app(store=store, artifact_root=tmp_path, clock=clock))
    harness = SlaApi(client, store, clock, tokens, routes, policy_path, load_connector_config(config))
    with client:
        yield harness


def ack_body(state: str = "acknowledged", **extra: Any) -> dict[str, Any]:
    return {"group": "critical", "state": state, **extra}


def test_the_owner_acknowledges_and_the_next_evaluation_sends_nothing(sla_api: SlaApi) -> None:
    first = sla_api.cycle(1)
    assert sorted(r["receiver"] for r in first.sent) == ["pager-ops", "slack-ops"]
    response = sla_api.post("endpoint-ops", ack_body(comment="on it"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["acknowledged_by"] == "endpoint-ops" and body["acknowledgement_state"] == "acknowledged"
    assert body["group_key"] == "endpoint-remediation/critical" and body["notes"] == "on it"
    assert body["acknowledgement_id"].startswith("erslaack-") and body["replayed"] is False
    assert body["acknowledged_at"].startswith("2026-03-04T08:10:00")
    # without the acknowledgement governance is paged at +60m (see the stranger test); now nothing
    assert sla_api.cycle(60).sent == []
    assert sla_api.cycle(125).sent == []
    assert len(sla_api.routes["jira-gov"].requests) == 0
    records = sla_api.evidence(sla_ops.KIND_ACK)
    assert [(r.actor, r.payload["acknowledgement_id"]) for r in records] == [
        ("endpoint-ops", body["acknowledgement_id"])
    ]
    escalations = sla_api.get("dave").json()
    incident = escalations["owners"]["endpoint-ops"][0]
    assert incident["state"] == "acknowledged" and incident["acknowledged_by"] == "endpoint-ops"


def test_a_member_acknowledges(sla_api: SlaApi) -> None:
    sla_api.cycle(1)
    response = sla_api.post("alice", ack_body())
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == "alice"
    assert sla_api.cycle(60).sent == []


@pytest.mark.parametrize("who", ["carol", "root"])
def test_an_admin_token_or_a_policy_admin_acknowledges_any_route(sla_api: SlaApi, who: str) -> None:
    sla_api.cycle(1)
    response = sla_api.post(who, ack_body(group="endpoint-remediation/critical"))
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == who
    assert sla_api.cycle(60).sent == []


@pytest.mark.parametrize("who", ["bob", "eve"])
def test_a_stranger_is_refused_403_the_refusal_is_recorded_and_the_ladder_goes_on(sla_api: SlaApi, who: str) -> None:
    sla_api.cycle(1)
    response = sla_api.post(who, ack_body())
    assert response.status_code == 403
    assert response.json()["error"] == "sla-ack-refused"
    assert f"{who} is not endpoint-ops" in response.json()["message"]
    refused = sla_api.evidence(sla_ops.KIND_ACK_REFUSED)
    assert [(r.actor, r.payload["group_key"], r.subject.success) for r in refused] == [
        (who, "endpoint-remediation/critical", False)
    ]
    assert [type(e) for e in sla_api.history()][-1] is AckRefused
    assert not any(isinstance(e, Acknowledged) for e in sla_api.history())
    assert sla_api.evidence(sla_ops.KIND_ACK) == []
    # the same refusal again at the same instant: refused again, recorded once
    assert sla_api.post(who, ack_body()).status_code == 403
    assert len(sla_api.evidence(sla_ops.KIND_ACK_REFUSED)) == 1
    # nothing stopped: governance is paged at +60m
    assert [r["receiver"] for r in sla_api.cycle(60).sent] == ["jira-gov"]


def test_a_viewer_token_never_writes_even_as_a_member(sla_api: SlaApi) -> None:
    sla_api.cycle(1)
    response = sla_api.post("dave", ack_body())
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden" and "viewer" in response.json()["message"]
    refused = sla_api.evidence(sla_ops.KIND_ACK_REFUSED)
    assert [(r.actor, r.payload["state"]) for r in refused] == [("dave", "acknowledged")]
    assert sla_api.evidence(sla_ops.KIND_ACK) == []
    assert [r["receiver"] for r in sla_api.cycle(60).sent] == ["jira-gov"]


@pytest.mark.parametrize("field", ["by", "actor", "acknowledged_by"])
def test_a_body_naming_an_actor_is_refused_422(sla_api: SlaApi, field: str) -> None:
    sla_api.cycle(1)
    response = sla_api.post("bob", ack_body(**{field: "endpoint-ops"}))
    assert response.status_code == 422
    assert response.json()["error"] == "bad-input" and field in response.json()["message"]
    assert sla_api.evidence(sla_ops.KIND_ACK) == [] and sla_api.evidence(sla_ops.KIND_ACK_REFUSED) == []


@pytest.mark.parametrize("group", ["nope", "other-scope/critical", "endpoint-remediation/nope"])
def test_an_unknown_group_is_404(sla_api: SlaApi, group: str) -> None:
    response = sla_api.post("carol", ack_body(group=group))
    assert response.status_code == 404
    assert response.json()["error"] == "not-found" and "critical" in response.json()["message"]
    assert sla_api.history() == []


@pytest.mark.parametrize(
    "body",
    [
        {"group": "critical", "state": "snoozed"},
        {"group": "critical", "state": "ACK"},
        {"group": "critical"},
        {"state": "acknowledged"},
        {"group": "../critical", "state": "acknowledged"},
        {"group": "critical", "state": "acknowledged", "comment": "a\x00b"},
        {"group": "critical", "state": "acknowledged", "report_id": "x" * 200},
    ],
)
def test_bad_bodies_are_422(sla_api: SlaApi, body: dict[str, Any]) -> None:
    response = sla_api.post("endpoint-ops", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "bad-input"
    assert sla_api.history() == []


def test_a_repeated_acknowledgement_is_idempotent(sla_api: SlaApi) -> None:
    sla_api.cycle(1)
    first = sla_api.post("endpoint-ops", ack_body())
    again = sla_api.post("endpoint-ops", ack_body())
    assert first.status_code == again.status_code == 200
    assert again.json() == {**first.json(), "replayed": True}
    assert len(sla_api.evidence(sla_ops.KIND_ACK)) == 1
    assert sum(isinstance(e, Acknowledged) for e in sla_api.history()) == 1
    # later, the same decision renews the acknowledgement (a new record); still nothing is sent
    sla_api.clock.advance(minutes=5)
    later = sla_api.post("endpoint-ops", ack_body())
    assert later.status_code == 200 and later.json()["replayed"] is False
    assert later.json()["acknowledgement_id"] != first.json()["acknowledgement_id"]
    assert sla_api.cycle(60).sent == []


def test_resolved_closes_the_incident_and_a_second_decision_is_409(sla_api: SlaApi) -> None:
    sla_api.cycle(1)
    resolved = sla_api.post("alice", ack_body("resolved"))
    assert resolved.status_code == 200 and resolved.json()["fingerprints"]
    sla_api.clock.advance(minutes=1)
    again = sla_api.post("alice", ack_body("acknowledged"))
    assert again.status_code == 409 and "no open incident" in again.json()["message"]
    assert sla_api.get("dave").json()["incident_count"] == 0


def test_escalated_notifies_the_next_rung_now(sla_api: SlaApi) -> None:
    sla_api.cycle(1)
    assert sla_api.post("endpoint-ops", ack_body("escalated")).status_code == 200
    assert [r["receiver"] for r in sla_api.cycle(11).sent] == ["jira-gov"]


def test_the_report_is_the_recorded_one_named_by_id_or_the_newest(sla_api: SlaApi) -> None:
    sla_api.cycle(1)
    report_id = sla_api.get("dave").json()["report_id"]
    assert report_id.startswith("ersla_")
    named = sla_api.post("endpoint-ops", ack_body(report_id=report_id))
    assert named.status_code == 200 and named.json()["report_id"] == report_id
    unknown = sla_api.post("endpoint-ops", ack_body(report_id="ersla_000000000000"))
    assert unknown.status_code == 404 and "ersla_000000000000" in unknown.json()["message"]


def test_no_recorded_report_is_404_and_no_policy_is_409(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    monkeypatch.setenv("RINGWARD_PROMOTION_ROOT", str(tmp_path))
    policy_path = tmp_path / "sla-routing.yaml"
    monkeypatch.setenv("RINGWARD_SLA_POLICY", str(policy_path))
    _, secret = store.tokens.create(name="endpoint-ops", role=Role.OPERATOR, created_by="test", now=BREACH)
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(store=store, artifact_root=tmp_path, clock=Clock(ACK_AT))) as client:
        missing = client.post("/sla/acknowledgements", headers=headers, json=ack_body())
        assert missing.status_code == 409 and missing.json()["error"] == "not-configured"
        assert str(policy_path) in missing.json()["message"]
        policy_path.write_text(yaml.safe_dump(_policy_document()))
        no_report = client.post("/sla/acknowledgements", headers=headers, json=ack_body())
        assert no_report.status_code == 404 and "no SLA report" in no_report.json()["message"]
        assert client.get("/sla/escalations", headers=headers).status_code == 404
        policy_path.write_text("routes: [unclosed\n")
        broken = client.post("/sla/acknowledgements", headers=headers, json=ack_body())
        assert broken.status_code == 409 and broken.json()["error"] == "bad-config"


def test_open_escalations_per_owner_for_any_token(sla_api: SlaApi) -> None:
    before = sla_api.get("dave")
    assert before.status_code == 200
    assert before.json()["incident_count"] == 1
    [incident] = before.json()["owners"]["endpoint-ops"]
    assert incident["state"] == "triggered" and incident["group_key"] == "endpoint-remediation/critical"
    sla_api.cycle(1)
    sla_api.clock.now = BREACH + 61 * M
    sla_api.cycle(61)  # governance paged
    rung = sla_api.get("dave").json()["owners"]["endpoint-ops"][0]
    assert rung["level"] == "governance"
    assert sla_api.get("dave", owner="release-governance").json() == {
        **sla_api.get("dave").json(),
        "owners": {},
        "incident_count": 0,
    }
    assert sla_api.get("dave", owner="bad owner!").status_code == 422
    # a GET never writes
    rows = len(sla_api.history())
    head = sla_api.store.head().last_id
    sla_api.get("carol")
    assert sla_api.store.head().last_id == head and len(sla_api.history()) == rows


def test_tokens_are_required(sla_api: SlaApi) -> None:
    assert sla_api.client.post("/sla/acknowledgements", json=ack_body()).status_code == 401
    assert sla_api.client.get("/sla/escalations").status_code == 401
    assert sla_api.history() == []


def test_a_route_that_does_not_require_acknowledgement_is_409(sla_api: SlaApi) -> None:
    document = _policy_document()
    document["rules"][0]["acknowledgement_required"] = False
    sla_api.policy_path.write_text(yaml.safe_dump(document))
    sla_api.cycle(1)
    response = sla_api.post("endpoint-ops", ack_body())
    assert response.status_code == 409 and "does not require acknowledgement" in response.json()["message"]
    assert sla_api.evidence(sla_ops.KIND_ACK) == []


def test_the_routes_are_in_the_schema_with_the_actor_left_out_of_the_body(sla_api: SlaApi) -> None:
    schema = sla_api.get("dave", "/openapi.json").json()
    assert {"/sla/acknowledgements", "/sla/escalations"} <= set(schema["paths"])
    body = schema["components"]["schemas"]["AcknowledgementBody"]
    assert set(body["properties"]) == {"group", "state", "report_id", "comment"}
    assert body["additionalProperties"] is False
