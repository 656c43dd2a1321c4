"""`remediation execute` / `remediation actions`: republish and rollback actions run through the promotion
domain's endpoint publication and rollout rollback, each under its own approval; a missing or pending
approval is reported as awaiting it (recorded), never silently done; refusals are recorded; done
operations are not run again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringward.core.errors import InputError, NotFoundError
from ringward.operations.remediation.promotion_actions import (
    KIND_ACTION,
    PromotionInputs,
    run_promotion_actions,
)
from tests.connectors.conftest import SECRETS
from tests.connectors.fault_server import FaultServer, Route
from tests.inventory.conftest import cli, records
from tests.promotion.conftest import ChannelWorld, RolloutWorld
from tests.remediation.conftest import RemediationWorld, at, drifted_fleet

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def fleet_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def fleet(fleet_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> Route:
    monkeypatch.setenv("RW_LINUX_TOKEN", SECRETS["RW_LINUX_TOKEN"])
    return fleet_server.route("/fleet/publications")


def _connectors(rw: RemediationWorld, route: Route) -> Path:
    path = rw.inv.work / "connectors.yaml"
    path.write_text(yaml.safe_dump({
        "defaults": {"backoff_base_seconds": 0.01, "timeout_seconds": 5.0},
        "providers": [{"name": "linux-fleet", "provider": "linux", "url": route.url, "token": "env:RW_LINUX_TOKEN"}]}))
    return path


def _report(rw: RemediationWorld) -> Path:
    """A drift report of channel stable (the channel the exports below promote)."""
    rw.counter[0] += 1
    n = rw.counter[0]
    ingested = rw.inv.ingest({"endpoints": drifted_fleet(rw.inv)}, name=f"pa-{n}.json", channel="stable",
                             output=rw.inv.work / f"pa-obs-{n}", now=at(1))
    reconciled = rw.inv.reconcile(Path(ingested["observations"]), now=at(2), output=rw.inv.work / f"pa-recon-{n}")
    return Path(reconciled["report"])


def _executed(rw: RemediationWorld, *, strategy: str = "mixed", **promotion: Any) -> tuple[dict[str, Any],
                                                                                             dict[str, Any]]:
    requested = rw.request(_report(rw), strategy=strategy)
    rw.approve(requested["approval_id"])
    return requested, rw.execute(requested["request"], requested["approval_id"],
                                 promotion=PromotionInputs(**promotion) if promotion else None)


def _actions(rw: RemediationWorld, execution_id: str, *, hours: float = 5, **promotion: Any) -> dict[str, Any]:
    return run_promotion_actions(rw.store, execution_id=execution_id, actor="carol", trust_root=rw.keys.trust_root,
                                 now=at(hours), inputs=PromotionInputs(**promotion))


def _recorded(rw: RemediationWorld) -> list[tuple[str, str]]:
    return [(r.payload["operation"], r.subject.status or "") for r in records(rw.store, KIND_ACTION)
            if r.subject.status != "refused" or "operation" in r.payload]


def test_without_their_approvals_actions_await_them(rw: RemediationWorld) -> None:
    _requested, executed = _executed(rw)
    (republish,) = executed["promotion_actions"]  # mixed: the drift and the missing target both republish
    assert republish["operation"] == "republish" and republish["status"] == "awaiting_approval"
    assert republish["action_count"] == 3 and "ringward channel request-promotion" in republish["message"]
    assert executed["promotion_complete"] is False
    assert _recorded(rw) == [("republish", "awaiting_approval")]
    # a rollback strategy awaits the rollback's approval too
    _requested, executed = _executed(rw, strategy="rollback")
    statuses = {a["operation"]: a["status"] for a in executed["promotion_actions"]}
    assert statuses == {"republish": "awaiting_approval", "rollback": "awaiting_approval"}


def test_republish_publishes_the_approved_export_once(rw: RemediationWorld, fleet: Route) -> None:
    _req, exported = ChannelWorld(rw.store, rw.keys, rw.inv.sim, rw.inv.work, rw.inv.package).promote(
        provider="linux", output=rw.inv.work / "export")
    manifest = Path(exported["output_dir"]) / "endpoint-management-export-manifest.json"
    config = _connectors(rw, fleet)
    _requested, executed = _executed(rw, republish_export=manifest, connectors=config)
    (republish,) = executed["promotion_actions"]
    assert republish["status"] == "done", republish
    assert republish["result"]["export_id"] == exported["export_id"]
    assert republish["result"]["approval_id"] == exported["approval_id"]  # the channel promotion's own approval
    assert len(fleet.successes) == 1
    again = _actions(rw, executed["execution_id"], republish_export=manifest, connectors=config)
    assert again["complete"] and again["actions"][0]["repeat"] is True
    assert len(fleet.successes) == 1  # done operations are not run again


def test_republish_of_another_release_or_a_forged_export_is_refused(rw: RemediationWorld, fleet: Route,
                                                                   tmp_path: Path) -> None:
    world = ChannelWorld(rw.store, rw.keys, rw.inv.sim, rw.inv.work, rw.inv.package)
    _req, exported = world.promote(provider="linux", output=rw.inv.work / "export")
    manifest = Path(exported["output_dir"]) / "endpoint-management-export-manifest.json"
    config = _connectors(rw, fleet)
    _requested, executed = _executed(rw)
    forged = tmp_path / "forged"
    shutil.copytree(manifest.parent, forged)
    document = json.loads(manifest.read_text())
    (forged / manifest.name).write_text(json.dumps({**document, "channel": "beta"}))
    outcome = _actions(rw, executed["execution_id"], republish_export=forged / manifest.name, connectors=config)
    (action,) = outcome["actions"]
    assert action["status"] == "refused" and "channel beta, expected stable" in action["message"]
    (forged / manifest.name).write_text(json.dumps({**document, "release": {**document["release"],
                                                                          "version": "9.9.9"}}))
    (action,) = _actions(rw, executed["execution_id"], republish_export=forged / manifest.name,
                         connectors=config)["actions"]
    assert action["status"] == "refused" and "release 9.9.9, expected 1.2.3" in action["message"]
    (forged / manifest.name).write_text(json.dumps({**document, "export_id": "eme_000000000000"}))
    (action,) = _actions(rw, executed["execution_id"], republish_export=forged / manifest.name,
                         connectors=config)["actions"]
    assert action["status"] == "refused" and action["error"]["code"] == "digest-mismatch"  # the promotion check
    assert fleet.requests == []
    assert [s for _, s in _recorded(rw)] == ["awaiting_approval", "refused", "refused", "refused"]
    # the genuine export still republishes afterwards
    (action,) = _actions(rw, executed["execution_id"], republish_export=manifest, connectors=config)["actions"]
    assert action["status"] == "done"


def test_rollback_runs_under_its_own_approval(rw: RemediationWorld) -> None:
    rollout = RolloutWorld(rw.store, rw.keys, rw.inv.sim, rw.inv.work, rw.inv.package)
    _captured, _request, promoted = rollout.promoted()
    execution = Path(promoted["execution_path"])
    _requested, executed = _executed(rw, strategy="rollback", rollback_execution=execution)
    statuses = {a["operation"]: a["status"] for a in executed["promotion_actions"]}
    assert statuses == {"republish": "awaiting_approval", "rollback": "awaiting_approval"}
    rollback_request = rollout.request_rollback(execution, at=at(4.1))
    approval_id = rollback_request["approval_id"]
    # its approval exists but is pending: still awaiting, nothing rolled back
    pending = _actions(rw, executed["execution_id"], hours=4.2, rollback_execution=execution,
                       rollback_approval=approval_id)
    (rollback,) = [a for a in pending["actions"] if a["operation"] == "rollback"]
    assert rollback["status"] == "awaiting_approval" and "pending (0/1 approvals)" in rollback["message"]
    assert rw.store.approvals.get(approval_id).consumed_at is None
    rollout.approve(approval_id, actor="frank", at=at(4.3))
    done = _actions(rw, executed["execution_id"], hours=4.4, rollback_execution=execution,
                    rollback_approval=approval_id, rollback_output=rw.inv.work / "rollback")
    (rollback,) = [a for a in done["actions"] if a["operation"] == "rollback"]
    assert rollback["status"] == "done" and rollback["result"]["approval_id"] == approval_id
    approval = rw.store.approvals.get(approval_id)
    assert approval.consumed_at is not None and approval.execution_ref == rollback["result"]["rollback_id"]
    assert (rw.inv.work / "rollback" / "rollout-rollback-execution.json").is_file()
    again = _actions(rw, executed["execution_id"], hours=4.5, rollback_execution=execution,
                     rollback_approval=approval_id)
    assert next(a for a in again["actions"] if a["operation"] == "rollback")["repeat"] is True


def test_rollback_of_an_unrelated_release_is_refused(rw: RemediationWorld) -> None:
    rollout = RolloutWorld(rw.store, rw.keys, rw.inv.sim, rw.inv.work, rw.inv.sim.package("2.0.0", out="v2"))
    _captured, _request, promoted = rollout.promoted()
    execution = Path(promoted["execution_path"])
    rollback_request = rollout.request_rollback(execution, at=at(4.1))
    rollout.approve(rollback_request["approval_id"], actor="frank", at=at(4.2))
    _requested, executed = _executed(rw, strategy="rollback")
    outcome = _actions(rw, executed["execution_id"], rollback_execution=execution,
                       rollback_approval=rollback_request["approval_id"])
    (rollback,) = [a for a in outcome["actions"] if a["operation"] == "rollback"]
    assert rollback["status"] == "refused" and "release '2.0.0' is neither" in rollback["message"]
    assert rw.store.approvals.get(rollback_request["approval_id"]).consumed_at is None


def test_bad_options_and_unknown_executions(rw: RemediationWorld, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not recorded"):
        _actions(rw, "ere_000000000000")
    assert [r.payload["error"]["code"] for r in records(rw.store, KIND_ACTION)] == ["not-found"]
    with pytest.raises(InputError, match="--config: required"):
        _actions(rw, "ere_000000000000", republish_export=tmp_path / "m.json")
    with pytest.raises(InputError, match="--rollback-execution: required"):
        _actions(rw, "ere_000000000000", rollback_approval="apr_1")
    requested = rw.request(_report(rw))
    rw.approve(requested["approval_id"])
    with pytest.raises(InputError, match="--rollback-execution: required"):  # checked before the approval is used
        rw.execute(requested["request"], requested["approval_id"],
                   promotion=PromotionInputs(rollback_approval="apr_1"))
    assert rw.store.approvals.get(requested["approval_id"]).consumed_at is None


def test_cli_execute_and_actions(rw: RemediationWorld, capsys: pytest.CaptureFixture[str]) -> None:
    requested = rw.request(_report(rw))
    rw.approve(requested["approval_id"])
    code, out, err = cli(capsys, "remediation", "execute", requested["request"], "--approval",
                         requested["approval_id"], "--actor", "carol", "--trust-root", str(rw.keys.trust_root),
                         "--at", at(4).isoformat())
    assert code == 0, err
    assert "republish (3 actions): AWAITING APPROVAL" in out and "ringward remediation actions ere_" in out
    execution_id = out.split("EXECUTED: ")[1].split()[0]
    code, out, err = cli(capsys, "remediation", "actions", execution_id, "--actor", "carol", "--trust-root",
                         str(rw.keys.trust_root), "--at", at(5).isoformat(), "--json")
    assert code == 0, err
    assert json.loads(out)["awaiting"] == ["republish"]
    code, _, err = cli(capsys, "remediation", "actions", "nope", "--trust-root", str(rw.keys.trust_root))
    assert code == 2 and "expected an execution id" in err
