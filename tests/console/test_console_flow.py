"""The ``console-refresh`` flow on the shared Prefect test server (three small flow runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringward.operations.common.console import OVERVIEW_KEY, PAGES
from ringward.store import open_store
from tests.connectors.fault_server import FaultServer
from tests.console.populate import NOW, populate

pytestmark = pytest.mark.prefect

ALL_KEYS = [*(key for key, _ in PAGES.values()), *(f"{key}-table" for key, _ in PAGES.values()), OVERVIEW_KEY]


def _artifacts_of_run(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key is not None}


def test_empty_store_publishes_every_page_and_completes(prefect_server: None, ringward_home: Path) -> None:
    from flows.console import console_refresh_flow

    state = console_refresh_flow(at=NOW, return_state=True)
    assert state.is_completed(), state
    assert state.message == "console refreshed; attention: none"
    result = state.result()
    assert sorted(result["keys"]) == sorted(ALL_KEYS)
    assert set(result["levels"].values()) == {"empty"}

    artifacts = _artifacts_of_run(state.state_details.flow_run_id)
    assert sorted(artifacts) == sorted(ALL_KEYS)
    for key, _title in PAGES.values():
        assert artifacts[key].type == "markdown" and "Nothing yet" in str(artifacts[key].data)
        assert artifacts[f"{key}-table"].type == "table"
    overview = str(artifacts[OVERVIEW_KEY].data)
    assert overview.startswith("# Ringward overview — OK")
    assert all(f"/artifacts/key/{key})" in overview for key, _ in PAGES.values())


def test_populated_store_shows_current_state(prefect_server: None, ringward_home: Path,
                                              fault_server: FaultServer) -> None:
    from prefect.artifacts import Artifact

    from flows.console import console_refresh_flow

    with open_store() as store:
        populate(store, fault_server)
    state = console_refresh_flow(at=NOW, return_state=True)
    assert state.is_completed(), state
    levels = state.result()["levels"]
    assert levels["channels"] == "attention" and levels["rollouts"] == "ok" and levels["evidence"] == "ok"
    assert "channels" in str(state.message) and "releases" in str(state.message)

    channels = Artifact.get("console-channels")  # the latest under the stable key
    assert channels is not None and "stable" in str(channels.data) and "HELD" in str(channels.data)
    approvals = Artifact.get("console-approvals-table")
    assert approvals is not None
    rows = json.loads(str(approvals.data))
    assert [r["target"] for r in rows] == ["channel:stable"]
    overview = Artifact.get(OVERVIEW_KEY)
    assert overview is not None and "ATTENTION" in str(overview.data)


def test_an_unavailable_page_fails_the_run_but_publishes_the_rest(prefect_server: None, ringward_home: Path) -> None:
    import sqlalchemy as sa

    from flows.console import console_refresh_flow
    from ringward.core.incidents.record import IncidentSeverity, IncidentType
    from ringward.operations.incidents.incident_ops import open_incident
    from ringward.store.tables import kv_state_table

    with open_store() as store:
        opened = open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.HIGH, summary="x",
                               actor="ringward-kev", now=NOW)
        with store.writing() as conn:
            conn.execute(sa.update(kv_state_table).where(kv_state_table.c.key == opened["incident"]["incident_id"])
                         .values(value="{}"))
    state = console_refresh_flow(at=NOW, return_state=True)
    assert state.is_failed(), state
    assert state.message == "console: unavailable page(s): incidents"
    artifacts = _artifacts_of_run(state.state_details.flow_run_id)
    assert sorted(artifacts) == sorted(ALL_KEYS)
    assert "UNAVAILABLE" in str(artifacts["console-incidents"].data)
