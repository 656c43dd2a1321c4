"""A redeploy (`ringward deploy`, every start of `ringward up --pool`: both run ``deploy_all``) keeps what an
operator switched on the Prefect server: a schedule the rendered prefect.yaml keeps off (its deployment needs
a file) that was turned on stays on, an active schedule turned off stays off, a paused deployment stays
paused, an opt-in trigger turned on stays on; every other schedule, trigger and deployment keeps the
rendered default. Prefect's own upsert would recreate the schedules and triggers from the file and un-pause.

Against the session's Prefect test server: two `prefect deploy --all` of the catalog into a pool of this
test (deleted afterwards, with the catalog deployments it registered)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.catalog import CATALOG
from deployments.pool import deploy_all, keep_choices, pool_prefect_yaml, schedule_key, server_states, trigger_key
from ringward.operations.common.prefect_rest import telemetry_off
from ringward.operations.common.scale_out import PrefectAdmin, ensure_process_pool
from tests.up import cluster as cl

POOL = "ringward-keep-test"
NAMES = {deployment.name for deployment in CATALOG}


def _rendered() -> list[dict[str, Any]]:
    return list(yaml.safe_load(pool_prefect_yaml(POOL))["deployments"])


# --- without a server -----------------------------------------------------------------------------------------------


def test_the_servers_switches_are_written_into_the_deployed_file() -> None:
    document: dict[str, Any] = {"deployments": [
        {"name": "a", "entrypoint": "flows.a.a", "schedules": [{"interval": 300, "active": False},
                                                               {"cron": "15 3 * * *", "timezone": "UTC",
                                                                "active": True}],
         "triggers": [{"type": "event", "enabled": False, "match": {"prefect.resource.id": "x.*"},
                       "expect": ["x.done"]}]},
        {"name": "b", "entrypoint": "flows.b.b", "schedules": [{"interval": 60, "active": True}]},
        {"name": "new", "entrypoint": "flows.n.n", "schedules": [{"interval": 60, "active": False}]},
        {"name": "served", "entrypoint": "flows.s.s", "schedules": [{"interval": 60, "active": False}]},
    ]}
    rendered = copy.deepcopy(document)
    deployments: list[dict[str, Any]] = [
        {"id": "d-a", "name": "a", "entrypoint": "flows.a.a", "work_pool_name": "p", "paused": False, "schedules": [
            {"schedule": {"cron": "15 3 * * *", "timezone": "UTC", "day_or": True}, "active": False, "slug": None},
            {"schedule": {"interval": 300.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"},
             "active": True, "slug": None}]},
        # the same name on another flow (not ours) and ours, paused, with a schedule the catalog dropped
        {"id": "d-b2", "name": "b", "entrypoint": "elsewhere.b", "work_pool_name": "p", "paused": False,
         "schedules": [{"schedule": {"interval": 60.0}, "active": False}]},
        {"id": "d-b", "name": "b", "entrypoint": "flows.b.b", "work_pool_name": "q", "paused": True,
         "schedules": [{"schedule": {"interval": 7200.0}, "active": False}]},
        # served by a runner (no work pool), paused when it stopped: not an operator's switch
        {"id": "d-s", "name": "served", "entrypoint": "flows.s.s", "work_pool_name": None, "paused": True,
         "schedules": [{"schedule": {"interval": 60.0}, "active": True}]},
    ]
    automations: list[dict[str, Any]] = [
        {"name": "a__automation_1", "enabled": True, "actions": [{"type": "run-deployment", "deployment_id": "d-a"}],
         "trigger": {"type": "event", "match": {"prefect.resource.id": "x.*"}, "expect": ["x.done"]}},
        {"name": "a__automation_1", "enabled": False,  # another deployment's namesake: not ours
         "actions": [{"type": "run-deployment", "deployment_id": "d-other"}], "trigger": {}},
    ]
    states = server_states(deployments, automations, document["deployments"])
    assert set(states) == {"a", "b"}
    kept = keep_choices(document, states)
    a, b, new, served = document["deployments"]
    assert [s["active"] for s in a["schedules"]] == [True, False]
    assert a["triggers"][0]["enabled"] is True and "paused" not in a
    assert b["schedules"] == [{"interval": 60, "active": True}] and b["paused"] is True  # 7200s: not this one
    assert new == rendered["deployments"][2] and served == rendered["deployments"][3]
    assert kept == ["a schedule every 300s on", "a schedule cron 15 3 * * * off", "a trigger on x.done on",
                    "b paused"]
    # nothing on the server: the rendered defaults, nothing to say
    fresh = copy.deepcopy(rendered)
    assert keep_choices(fresh, server_states([], [], fresh["deployments"])) == [] and fresh == rendered


def test_schedule_and_trigger_identities_match_the_rest_spelling() -> None:
    assert schedule_key({"interval": 300}) == schedule_key({"interval": 300.0, "anchor_date": "x", "timezone": "UTC"})
    assert schedule_key({"cron": "*/5  * * * *", "timezone": "UTC"}) == schedule_key({"cron": "*/5 * * * *"})
    assert schedule_key({"cron": "0 3 * * *", "timezone": "Europe/Paris"}) != schedule_key({"cron": "0 3 * * *"})
    assert schedule_key({"interval": 300}, "nightly") == schedule_key({"cron": "0 3 * * *"}, "nightly")
    assert trigger_key({"expect": ["b", "a"], "match": {"prefect.resource.id": "x.*"}, "enabled": False}) == \
        trigger_key({"expect": ["a", "b"], "match": {"prefect.resource.id": "x.*"}, "posture": "Reactive"})
    assert trigger_key({"expect": ["a"], "match": {"prefect.resource.id": "x.*"}}) != \
        trigger_key({"expect": ["a"], "match": {"prefect.resource.id": "y.*"}})


def test_the_pool_banner_names_no_loopback_address_for_other_hosts(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ringward.cli.up_cmd import _announce

    def more_hosts(**kwargs: Any) -> list[str]:
        _announce("http://127.0.0.1:4200", "http://127.0.0.1:4200/api", "http://127.0.0.1:8000", None, 3, tmp_path,
                  tmp_path, ("edge", "w1"), **kwargs)
        lines = capsys.readouterr().out.splitlines()
        start = next(i for i, line in enumerate(lines) if "more hosts" in line)
        return lines[start:-2]

    # `up --host 0.0.0.0`: a placeholder and what to put there
    (line, hint) = more_hosts(workers_api="http://<this-host>:4200/api")
    assert "PREFECT_API_URL=http://<this-host>:4200/api ringward worker --pool edge" in line and "127.0.0.1" not in line
    assert "<this-host>: this machine's name or address" in hint
    (line,) = more_hosts()  # a loopback-only or an external server: its URL as it is
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api ringward worker --pool edge" in line


# --- against the session's Prefect server ---------------------------------------------------------------------------


def _forget(api: str) -> None:
    """Delete the catalog deployments on the server (their triggers' automations and scheduled runs too)."""
    with PrefectAdmin(api) as client:
        for row in client.deployments():
            if row["name"] in NAMES:
                client._send("DELETE", f"/automations/owned-by/prefect.deployment.{row['id']}")
                client._send("DELETE", f"/deployments/{row['id']}")


@pytest.fixture
def api(prefect_server: None) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value()).rstrip("/")
    _forget(url)  # earlier tests may have served some of them: start from the rendered defaults
    yield url
    _forget(url)
    with PrefectAdmin(url) as client:
        client._send("DELETE", f"/work_pools/{POOL}")


def _state(api: str) -> dict[str, dict[str, Any]]:
    """Deployment name -> paused, schedules (key -> active) and trigger automations (key -> enabled)."""
    with PrefectAdmin(api) as client:
        rows = {row["name"]: row for row in client.deployments() if row["name"] in NAMES}
        automations = client.automations()
    owned: dict[str, dict[Any, bool]] = {}
    for automation in automations:
        for action in automation.get("actions") or []:
            if action.get("type") == "run-deployment":
                owned.setdefault(action.get("deployment_id"), {})[trigger_key(automation["trigger"])] = \
                    automation["enabled"]
    return {name: {"paused": row["paused"], "pool": row["work_pool_name"],
                   "schedules": {schedule_key(s["schedule"]): s["active"] for s in row["schedules"]},
                   "schedule_ids": {schedule_key(s["schedule"]): s["id"] for s in row["schedules"]},
                   "triggers": owned.get(row["id"], {})}
            for name, row in rows.items()}


def _defaults() -> dict[str, dict[str, Any]]:
    return {entry["name"]: {"paused": False, "pool": POOL,
                            "schedules": {schedule_key(s): s["active"] for s in entry.get("schedules") or []},
                            "triggers": {trigger_key(t): t["enabled"] for t in entry.get("triggers") or []}}
            for entry in _rendered()}


@pytest.mark.slow
@pytest.mark.prefect
def test_a_redeploy_keeps_the_operators_switches(api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = dict(telemetry_off(cl.clean_env(PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "prefect"))))
    ensure_process_pool(api, POOL, env)
    log = tmp_path / "deploy.log"
    deploy_all(POOL, env, log)
    assert capsys.readouterr().err == ""  # nothing on the server before: the rendered defaults, nothing said
    defaults = _defaults()
    first = _state(api)
    assert {k: {f: v for f, v in d.items() if f != "schedule_ids"} for k, d in first.items()} == defaults

    # the operator: one schedule that is rendered off turned on, one rendered on turned off, one deployment
    # paused, one opt-in trigger turned on (each on another deployment)
    entries = _rendered()
    off = next(e for e in entries if any(not s["active"] for s in e.get("schedules") or []))
    on = next(e for e in entries if e is not off and any(s["active"] for s in e.get("schedules") or []))
    trigger = next(e for e in entries if e not in (off, on) and any(not t["enabled"] for t in e.get("triggers") or []))
    paused = next(e for e in entries if e not in (off, on, trigger) and e.get("schedules"))
    switch_on = next(schedule_key(s) for s in off["schedules"] if not s["active"])
    switch_off = next(schedule_key(s) for s in on["schedules"] if s["active"])
    enable = next(trigger_key(t) for t in trigger["triggers"] if not t["enabled"])
    with PrefectAdmin(api) as client:
        rows = {row["name"]: row for row in client.deployments() if row["name"] in NAMES}
        client._send("PATCH", f"/deployments/{rows[off['name']]['id']}/schedules/"
                              f"{first[off['name']]['schedule_ids'][switch_on]}", {"active": True})
        client._send("PATCH", f"/deployments/{rows[on['name']]['id']}/schedules/"
                              f"{first[on['name']]['schedule_ids'][switch_off]}", {"active": False})
        client._post(f"/deployments/{rows[paused['name']]['id']}/pause_deployment", {})
        (automation,) = [a for a in client.automations() if trigger_key(a["trigger"]) == enable and any(
            x.get("deployment_id") == rows[trigger["name"]]["id"] for x in a["actions"])]
        client.set_automation_enabled(automation["id"], True)

    deploy_all(POOL, env, log)
    err = capsys.readouterr().err
    second = _state(api)
    # Prefect recreated the schedules (new ids): the flags below were written by the redeploy, not left alone
    assert second[off["name"]]["schedule_ids"][switch_on] != first[off["name"]]["schedule_ids"][switch_on]
    expected = copy.deepcopy(defaults)
    expected[off["name"]]["schedules"][switch_on] = True
    expected[on["name"]]["schedules"][switch_off] = False
    expected[paused["name"]]["paused"] = True
    expected[trigger["name"]]["triggers"][enable] = True
    assert {k: {f: v for f, v in d.items() if f != "schedule_ids"} for k, d in second.items()} == expected
    (line,) = err.strip().splitlines()
    assert line.startswith("kept what was switched on the Prefect server")
    assert f"{off['name']} schedule " in line and f"{on['name']} schedule " in line
    assert f"{paused['name']} paused" in line and f"{trigger['name']} trigger on " in line
    assert line.count(";") == 3
    assert "kept what was switched" in log.read_text(errors="replace")
