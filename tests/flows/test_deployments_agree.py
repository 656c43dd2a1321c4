"""prefect.yaml (`prefect deploy --all`) and deployments/serve.py (`python -m deployments.serve`)
declare the same deployments: names, flows, tags, parameters, concurrency limits, schedules and
event triggers; every trigger template is a plain ``{{ event.payload.<field> }}`` naming a field
the emitted event carries and a parameter the flow takes."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAIN_TEMPLATE = re.compile(r"^\{\{ event\.payload\.([a-z_]+) \}\}$")


def _yaml_deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in document["deployments"]}


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    from deployments.serve import build_deployments

    deployments = build_deployments(environ={})
    names = [d.name for d in deployments]
    assert len(names) == len(set(names)), names
    return {d.name: d for d in deployments}


def _module_path(entrypoint: str) -> str:
    path, function = entrypoint.split(":")
    return f"{path.removesuffix('.py').replace('/', '.')}.{function}"


def _yaml_schedules(spec: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for item in spec.get("schedules") or []:
        if "interval" in item:
            out.append(("interval", float(item["interval"]), item.get("active", True)))
        else:
            out.append(("cron", item["cron"], item.get("timezone", "UTC"), item.get("active", True)))
    return out


def _served_schedules(deployment: Any) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for item in deployment.schedules or []:
        schedule = item.schedule
        if hasattr(schedule, "interval"):
            out.append(("interval", schedule.interval.total_seconds(), item.active))
        else:
            out.append(("cron", schedule.cron, schedule.timezone or "UTC", item.active))
    return out


def _yaml_triggers(spec: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(frozenset(t["expect"]), dict(t["match"]), dict(t.get("parameters") or {}), t.get("enabled", True))
            for t in spec.get("triggers") or []]


def _served_triggers(deployment: Any) -> list[tuple[Any, ...]]:
    return [(frozenset(t.expect), dict(t.match.root), dict(t.parameters or {}), t.enabled)
            for t in deployment.triggers]


def test_same_deployments(served: dict[str, Any]) -> None:
    declared = _yaml_deployments()
    assert list(declared) == list(served)
    for name, spec in declared.items():
        deployment = served[name]
        assert _module_path(spec["entrypoint"]) == deployment.entrypoint, name
        assert sorted(spec.get("tags") or []) == sorted(deployment.tags), name
        assert (spec.get("parameters") or {}) == (deployment.parameters or {}), name
        assert spec.get("concurrency_limit") == deployment.concurrency_limit, name
        assert _yaml_schedules(spec) == _served_schedules(deployment), name
        assert _yaml_triggers(spec) == _served_triggers(deployment), name


def test_every_promotion_flow_is_deployed_and_runnable(served: dict[str, Any]) -> None:
    from ringward.cli.run_cmd import FLOWS

    entrypoints = {d.entrypoint for d in served.values()}
    for flow_name, target in FLOWS.items():
        assert target.replace(":", ".") in entrypoints, flow_name


def _sample_events() -> dict[str, dict[str, Any]]:
    """The payload each trigger reacts to, built by the same code the CLI and the flows use."""
    from flows.package_release import published_payload
    from ringward.core.approvals.rules import Approval, ApprovalState
    from ringward.operations.promotion import automation

    evidence = {"evidence_id": "7"}
    executed = automation.promotion_executed_event({
        "execution_id": "rpe_1", "request_id": "rpr_1", "rollout_id": "r1", "approval_id": "apr_1",
        "ring_advancement": {"from": "pilot", "to": "broad"}, "executed_by": "carol", "break_glass": False,
        "execution_path": "x/rollout-promotion-execution.json", "evidence": evidence})
    rolled = automation.rollback_executed_event({
        "rollback_id": "rre_1", "promotion_execution_id": "rpe_1", "rollout_id": "r1", "approval_id": "apr_2",
        "ring_rollback": {"from": "broad", "to": "pilot"}, "executed_by": "erin",
        "rollback_path": "y/rollout-rollback-execution.json", "evidence": evidence})
    now = datetime.now(UTC)
    approval = Approval(approval_id="apr_1", action="release_promote_endpoint_rollout",
                        subject_digest="sha256:" + "0" * 64, target="r1->broad", requester="alice",
                        state=ApprovalState.APPROVED, created_at=now, expires_at=now + timedelta(hours=1))
    decided = automation.approval_decided_event(approval, decided_by="bob", decision="approve")
    published = published_payload({"package_dir": "out/rt-1.2.3", "version": "1.2.3", "runtime": "rt",
                                   "signed": True})
    return {executed[0]: executed[2], rolled[0]: rolled[2], decided[0]: decided[2],
            "ringward.package.published": published}


def test_trigger_templates_are_plain_and_complete(served: dict[str, Any]) -> None:
    from flows import events

    payloads = _sample_events()
    assert {events.PROMOTION_EXECUTED, events.ROLLBACK_EXECUTED, events.APPROVAL_DECIDED} <= set(payloads)
    assert Path(payloads[events.PROMOTION_EXECUTED]["execution_path"]).is_absolute()
    assert Path(payloads[events.ROLLBACK_EXECUTED]["rollback_path"]).is_absolute()
    assert Path(payloads["ringward.package.published"]["package_dir"]).is_absolute()
    triggered = 0
    for deployment in served.values():
        flow = _import(deployment.entrypoint)
        accepted = set(inspect.signature(flow.fn).parameters)
        for trigger in deployment.triggers:
            (event,) = trigger.expect
            for parameter, template in trigger.parameters.items():
                match = PLAIN_TEMPLATE.match(template)
                assert match, f"{deployment.name}: {parameter}: {template!r} is not a plain payload template"
                assert match.group(1) in payloads[event], f"{deployment.name}: {event} carries no {match.group(1)}"
                assert parameter in accepted, f"{deployment.name}: the flow takes no {parameter}"
            required = {n for n, p in inspect.signature(flow.fn).parameters.items() if p.default is p.empty}
            assert required <= set(trigger.parameters), deployment.name
            triggered += 1
    assert triggered == 4


def test_execute_on_approval_is_opt_in() -> None:
    from deployments.serve import build_deployments

    def enabled(environ: dict[str, str]) -> bool:
        (deployment,) = [d for d in build_deployments(environ=environ) if d.name == "execute-on-approval"]
        trigger: Any = deployment.triggers[0]
        return bool(trigger.enabled)

    assert not enabled({})
    assert not enabled({"RINGWARD_EXECUTE_ON_APPROVAL": "0"})
    assert enabled({"RINGWARD_EXECUTE_ON_APPROVAL": "1"})
    assert _yaml_deployments()["execute-on-approval"]["triggers"][0]["enabled"] is False


def _import(entrypoint: str) -> Any:
    import importlib

    module, _, name = entrypoint.rpartition(".")
    return getattr(importlib.import_module(module), name)
