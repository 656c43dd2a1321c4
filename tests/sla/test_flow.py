"""The scheduled sla-escalation flow on the shared Prefect server: one run delivers and records,
a second run of the same schedule window sends nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prefect import State

from flows._common import unwrap
from flows.sla_escalation import sla_escalation_flow
from ringward.core.evidence.query import EvidenceQuery
from ringward.operations.sla import sla_ops
from tests.connectors.conftest import write_config
from tests.connectors.fault_server import FaultServer
from tests.sla.factory import handoff, status
from tests.sla.test_time_travel import BREACH, ladder_policy

pytestmark = pytest.mark.prefect


def test_flow_run_is_idempotent_per_window(
    prefect_server: None, ringward_home: Path, tmp_path: Path, fault_server: FaultServer
) -> None:
    routes = {n: fault_server.route() for n in ("slack-ops", "pager-ops", "jira-gov")}
    config = write_config(
        tmp_path / "connectors.yaml", *({"name": n, "provider": "linux", "url": r.url} for n, r in routes.items())
    )
    policy = tmp_path / "routing.yaml"
    policy.write_text(yaml.safe_dump(ladder_policy()))
    inputs = tmp_path / "handoffs"
    inputs.mkdir()
    h = handoff(1, created_at=BREACH - timedelta(hours=2))
    (inputs / "h.json").write_text(h.model_dump_json())
    (inputs / "s.json").write_text(status(h, "failed", BREACH).model_dump_json())
    params = {
        "handoffs": [str(inputs)],
        "policy_path": str(policy),
        "config_path": str(config),
        "at": BREACH + timedelta(minutes=1),
    }

    first: State = sla_escalation_flow(**params, return_state=True)
    assert first.is_completed(), first.message
    result = unwrap(first)
    assert sorted(r["receiver"] for r in result["notify"]["sent"] + result["escalate"]["sent"]) == [
        "pager-ops",
        "slack-ops",
    ]
    again: State = sla_escalation_flow(**{**params, "at": BREACH + timedelta(minutes=3)}, return_state=True)
    assert again.is_completed() and "already run" in (again.message or "")
    assert [len(r.requests) for r in routes.values()] == [1, 1, 0]
    from ringward.store import open_store

    with open_store() as store:
        plans = store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_PLAN)).items
        assert len(plans) == 2  # notify and escalate of the one window
        assert all(p.flow_run_id for p in plans)


def test_flow_feeds_open_incidents_to_the_engine_and_publishes_the_owner_digest(
    prefect_server: None, ringward_home: Path, tmp_path: Path, fault_server: FaultServer
) -> None:
    from prefect.settings import PREFECT_API_URL

    from ringward.core.incidents.record import IncidentSeverity, IncidentType
    from ringward.operations.common.prefect_rest import PrefectRest
    from ringward.operations.incidents import incident_ops
    from ringward.store import open_store
    from tests.sla.test_incidents_feed import T0, incident_policy

    names = ("slack-ops", "slack-sec", "pager-sec", "phone-sec", "jira-gov")
    routes = {n: fault_server.route() for n in names}
    config = write_config(
        tmp_path / "connectors.yaml", *({"name": n, "provider": "linux", "url": r.url} for n, r in routes.items())
    )
    policy = tmp_path / "routing.yaml"
    policy.write_text(yaml.safe_dump(incident_policy()))
    inputs = tmp_path / "handoffs"
    inputs.mkdir()
    with open_store() as store:
        incident_ops.open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                                   summary="KEV match", actor="scanner", now=T0)
    state: State = sla_escalation_flow(handoffs=[str(inputs)], policy_path=str(policy), config_path=str(config),
                                       at=T0 + timedelta(hours=4, minutes=1), return_state=True)
    assert state.is_completed(), state.message
    result = unwrap(state)
    assert sorted(r["receiver"] for r in result["incidents"]["sent"]) == ["pager-sec", "phone-sec"]
    assert result["notify"]["sent"] == [] and result["digest_id"].startswith("erslaescdigest-")
    with PrefectRest(str(PREFECT_API_URL.value())) as rest:
        keys = {a.get("key") for a in rest.artifacts(str(state.state_details.flow_run_id))}
    assert {"sla-owner-digest", "sla-open-escalations", "sla-sent-and-suppressed"} <= keys
