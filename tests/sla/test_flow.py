"""The scheduled sla-escalation flow on the shared Prefect server: one run delivers and records,
a second run of the same schedule window sends nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prefect.states import State

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
