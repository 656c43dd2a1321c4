"""The scheduled flows as tracked Prefect runs on the shared test server: the breach report
delivers once per (incident, clock, level) and a re-run sends nothing; the KEV re-check flow wraps
``kev_ops.recheck_channels`` (its refusal comes back as the CLI's one-line error)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from ringward.core.errors import InputError
from ringward.core.incidents.record import IncidentSeverity, IncidentType
from ringward.operations.incidents import incident_ops
from ringward.store import open_store
from tests.incidents.conftest import T0, connectors_config


def _ids(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k == "event_id" and str(v).startswith("incident-breach:")}
        return found.union(*(_ids(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_ids(v) for v in value))
    return set()


def _sent(server: HTTPServer) -> int:
    """Events received (HEC batches several JSON objects in one request body)."""
    count = 0
    decoder = json.JSONDecoder()
    for request, _ in server.log:
        body, at = request.get_data(as_text=True), 0
        while at < len(body.rstrip()):
            obj, end = decoder.raw_decode(body, at)
            count += len(_ids(obj))
            at = end
            while at < len(body) and body[at].isspace():
                at += 1
    return count


pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_breach_flow_delivers_once_and_kev_recheck_flow_runs(
    prefect_server: None, cli_env: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    from flows._common import run_flow
    from flows.advisories_kev import kev_recheck_flow
    from flows.incidents_breaches import incident_breaches_flow

    with open_store(cli_env) as store:
        opened = incident_ops.open_incident(store, type=IncidentType.LEAKED_CREDENTIAL,
                                            severity=IncidentSeverity.HIGH, summary="PyPI token in a CI log",
                                            reporter="scanner", actor="secops", now=T0)
    iid = opened["incident"]["incident_id"]
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    config = connectors_config(tmp_path / "connectors.yaml", httpserver)
    first = run_flow(incident_breaches_flow, config_path=str(config), now=T0 + timedelta(hours=25))
    assert sorted(r["key"] for r in first["delivered"]) == [f"{iid}|first-action|breached",
                                                            f"{iid}|reporter-acknowledgement|breached"]
    assert _sent(httpserver) == 2  # HEC batches: count the events, not the requests
    again = run_flow(incident_breaches_flow, config_path=str(config), now=T0 + timedelta(hours=26))
    assert again["delivered"] == [] and len(again["already_delivered"]) == 2 and _sent(httpserver) == 2
    with open_store(cli_env) as store:
        record = store.get_evidence(first["evidence_id"])
        assert record.kind == incident_ops.KIND_BREACH_DELIVERY and record.flow_run_id

    (tmp_path / "packages").mkdir()
    clear = run_flow(kev_recheck_flow, packages=str(tmp_path / "packages"), trust_root=str(tmp_path / "none.json"),
                     now=T0)
    assert clear == {"schema_version": "ringward.kev-recheck.v1", "ok": True, "releases": [], "unchecked": {}}
    with pytest.raises(InputError, match=r"--packages .*: not a directory"):
        run_flow(kev_recheck_flow, packages=str(tmp_path / "nowhere"), trust_root=str(tmp_path / "none.json"), now=T0)
