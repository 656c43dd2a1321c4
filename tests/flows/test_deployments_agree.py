"""One source of deployments: ``deployments/catalog.py``. The committed ``prefect.yaml`` is its rendering
(``python -m deployments.render``), ``deployments/serve.py`` (and so ``ringward up``) serves the same
deployments: names, flows, tags, parameters, concurrency limits, schedules and event triggers. Every
trigger template is a plain ``{{ event.payload.<field> }}`` naming a field the emitted event carries
and a parameter the flow takes; no path is a literal."""

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
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The served deployments of a fresh home (nothing configured yet)."""
    from deployments.serve import build_deployments

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RINGWARD_HOME", str(tmp_path_factory.mktemp("fresh-home")))
        patch.delenv("RINGWARD_CONNECTORS", raising=False)
        patch.delenv("RINGWARD_TRUST_ROOT", raising=False)
        deployments = build_deployments(environ={})
    names = [d.name for d in deployments]
    assert len(names) == len(set(names)), names
    return {d.name: d for d in deployments}


def test_prefect_yaml_is_the_rendered_catalog() -> None:
    from deployments import render

    assert (ROOT / "prefect.yaml").read_text() == render.render(), "run `python -m deployments.render`"
    assert render.main(["--check"]) == 0


def test_render_check_fails_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from deployments import render

    stale = tmp_path / "prefect.yaml"
    stale.write_text(render.render().replace("verify-package-on-publish", "verify-on-publish"))
    monkeypatch.setattr(render, "PREFECT_YAML", stale)
    assert render.main(["--check"]) == 1
    assert "python -m deployments.render" in capsys.readouterr().err
    assert render.main(["--bogus"]) == 2
    assert render.main([]) == 0
    assert stale.read_text() == render.render()


def test_prefect_yaml_deploys_without_a_checkout_and_names_no_path() -> None:
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert document["pull"] == []  # module entrypoints: workers import the installed package
    text = (ROOT / "prefect.yaml").read_text() + (ROOT / "deployments" / "catalog.py").read_text()
    assert "/etc/" not in text and "/var/" not in text and "RINGWARD_CHECKOUT }}" not in text
    for spec in document["deployments"]:
        assert ":" not in spec["entrypoint"] and "/" not in spec["entrypoint"], spec["name"]
        assert spec["work_pool"]["name"] == "ringward-local"


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
        assert spec["entrypoint"] == deployment.entrypoint, name
        assert sorted(spec.get("tags") or []) == sorted(deployment.tags), name
        assert spec["description"] == deployment.description, name
        # a settings-valued parameter is resolved where runs execute (served) and left to the worker
        # (prefect.yaml); every other parameter is identical
        resolved = _settings_parameters(name)
        assert (spec.get("parameters") or {}) == {k: v for k, v in (deployment.parameters or {}).items()
                                                  if k not in resolved}, name
        for key in resolved:
            assert Path(deployment.parameters[key]).is_absolute(), (name, key)
        assert spec.get("concurrency_limit") == deployment.concurrency_limit, name
        assert _yaml_schedules(spec) == _served_schedules(deployment), name
        assert _yaml_triggers(spec) == _served_triggers(deployment), name


def _settings_parameters(name: str) -> set[str]:
    from deployments.catalog import Setting, by_name

    return {k for k, v in by_name()[name].parameters.items() if isinstance(v, Setting)}


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
    from ringward.operations.inventory.webhook_ops import received_event
    from ringward.store.inventory.receipts import WebhookReceipt

    receipt = WebhookReceipt(receipt_id=1, source="jamf-prod", webhook_id="m1", provider="jamf", channel="stable",
                             received_at=now, body_sha256="0" * 64, body_bytes=2, raw_path="/srv/x/webhook-body.json",
                             status="received", reason=None, evidence_id=7, inventory_id=None)
    received = received_event(receipt, ("rt",))
    from ringward.operations.inventory.events import ingested_event

    ingested = ingested_event({"status": "ingested", "inventory_id": "eii_000000000001", "provider": "jamf",
                               "channel": "stable"})
    assert ingested is not None
    kev = {"catalog_version": "2026.12.06", "sha256": "0" * 64, "count": 1, "evidence_id": 7}  # kev_cmd's payload
    return {executed[0]: executed[2], rolled[0]: rolled[2], decided[0]: decided[2],
            "ringward.package.published": published, received[0]: received[2], ingested[0]: ingested[2],
            "ringward.kev.imported": kev}


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
    assert triggered == 7


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


def test_unconfigured_deployments_are_off_until_their_file_exists(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.catalog import by_name
    from deployments.catalog import unconfigured_lines as describe_unconfigured
    from deployments.serve import build

    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RINGWARD_CONNECTORS", raising=False)
    spec = by_name()["redeliver-failed"]
    off = build(spec, {})
    assert off.parameters["config_path"] == str(tmp_path / "home" / "connectors.yaml")
    assert [s.active for s in off.schedules] == [False]
    monkeypatch.delenv("RINGWARD_SLA_HANDOFFS", raising=False)
    monkeypatch.delenv("RINGWARD_SLA_POLICY", raising=False)
    monkeypatch.delenv("RINGWARD_PACKAGES", raising=False)
    monkeypatch.delenv("RINGWARD_TRUST_ROOT", raising=False)
    home = tmp_path / "home"
    kev = f"kev-recheck: off until {home / 'packages'}, {home / 'trust-root.json'} exists"
    automation = (f"inventory-automation-on-ingest: off until {home / 'trust-root.json'}, "
                  f"{home / 'remediation-key.pem'} exists")
    assert describe_unconfigured() == [
        f"redeliver-failed: off until {home / 'connectors.yaml'} exists",
        automation,
        *(f"inventory-pull-{p}: off until {home / 'connectors.yaml'} exists" for p in ("jamf", "intune", "fleet")),
        f"sla-escalation: off until {home / 'remediation-handoffs'}, {home / 'sla-routing.yaml'}, "
        f"{home / 'connectors.yaml'} exists",
        kev,
    ]
    home.mkdir()
    (home / "connectors.yaml").write_text("destinations: []\n")
    on = build(spec, {})
    assert [s.active for s in on.schedules] == [True]
    assert describe_unconfigured() == [
        automation, f"sla-escalation: off until {home / 'remediation-handoffs'}, {home / 'sla-routing.yaml'} exists",
        kev]
    (home / "remediation-handoffs").mkdir()
    (home / "sla-routing.yaml").write_text("routes: []\n")
    sla = build(by_name()["sla-escalation"], {})
    assert [s.active for s in sla.schedules] == [True]
    assert sla.parameters["handoffs"] == str(home / "remediation-handoffs")
    assert describe_unconfigured() == [automation, kev]
    # an explicit $RINGWARD_CONNECTORS wins over the home's file, and is made absolute
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGWARD_CONNECTORS", "elsewhere.yaml")
    moved = build(spec, {})
    assert moved.parameters["config_path"] == str(tmp_path / "elsewhere.yaml")
    assert [s.active for s in moved.schedules] == [False]


def test_scheduled_and_triggered_runs_get_every_required_parameter(served: dict[str, Any]) -> None:
    """A run nobody starts by hand (schedule, trigger) must not need a parameter nobody gives it."""
    for deployment in served.values():
        flow = _import(deployment.entrypoint)
        required = {n for n, p in inspect.signature(flow.fn).parameters.items() if p.default is p.empty}
        if deployment.schedules:
            assert required <= set(deployment.parameters or {}), deployment.name
        for trigger in deployment.triggers:
            assert required <= set(trigger.parameters) | set(deployment.parameters or {}), deployment.name
        # a default parameter names a parameter the flow takes
        assert set(deployment.parameters or {}) <= set(inspect.signature(flow.fn).parameters), deployment.name


def test_adding_a_deployment_is_one_catalog_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments import catalog, render, serve

    extra = catalog.Deployment("verify-package-hourly", "flows.verify_package:verify_package_flow",
                               "Hourly re-verification.", ("release",), schedules=(catalog.Interval(3600),))
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, extra))
    monkeypatch.setattr(render, "CATALOG", catalog.CATALOG)
    monkeypatch.setattr(serve, "CATALOG", catalog.CATALOG)
    rendered = {d["name"]: d for d in yaml.safe_load(render.render())["deployments"]}
    assert rendered["verify-package-hourly"]["schedules"] == [{"interval": 3600, "active": True}]
    (served,) = [d for d in serve.build_deployments({}) if d.name == "verify-package-hourly"]
    assert served.entrypoint == "flows.verify_package.verify_package_flow"
