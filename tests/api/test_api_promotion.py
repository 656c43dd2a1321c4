"""Promotion routes: channel requests and exports, rollout requests, executions, rollbacks, the
drill-down, channel holds and window checks -- roles, the token as actor, confined paths, 409/423
refusals, and one coarse check that a decision emits its Prefect event."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ringward.api.app import create_app
from ringward.core.common.roles import Role
from ringward.core.evidence.query import EvidenceQuery
from ringward.store import Store, open_store
from tests.api.conftest import Api, Clock
from tests.promotion.conftest import PromotionKeys
from tests.release.simulator import NOW, ReleaseSimulator

REQUEST_FILE = "release-channel-promotion-request.json"
FREEZE = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)  # inside the year-end freeze of the test policy


@dataclass
class World:
    """An API over a store, a promotion root holding a signed package, and the server configured
    with the trust root and promotion key that pin it."""

    api: Api
    store: Store
    keys: PromotionKeys
    sim: ReleaseSimulator
    root: Path
    work: Path
    package: Path

    def capture(
        self, *, output: Path | None = None, package: Path | None = None, ring: str = "pilot"
    ) -> dict[str, Any]:
        """Capture a rollout in-process (there is no capture route), inside the root by default."""
        from ringward.operations.promotion.rollout_ops import capture_rollout

        target = output or self.work / f"rollout-{len(list(self.work.iterdir()))}"
        self.api.clock.advance(minutes=1)  # rollout ids carry the capture time
        return dict(
            capture_rollout(
                self.store,
                package_dir=package or self.package,
                environment="production",
                ring=ring,
                status="staged",
                change_record="CHG-1001",
                trust_root=self.keys.trust_root,
                output=target,
                actor="release-manager",
                now=self.api.clock.now,
            )
        )

    def post(self, path: str, who: str, body: dict[str, Any]) -> Any:
        return self.api.post(path, who, body)

    def approve(self, approval_id: str, who: str = "approver") -> dict[str, Any]:
        response = self.post(f"/approvals/{approval_id}/approve", who, {"reason": "CAB approved"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def records(self, kind: str) -> list[Any]:
        return list(self.store.search_evidence(EvidenceQuery(kind=kind, limit=500)).items)


@pytest.fixture
def world(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, promotion_server_config: Path
) -> Iterator[World]:
    root = tmp_path / "root"
    work = root / "work"
    work.mkdir(parents=True)
    home = tmp_path / "home"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(home / "evidence"))
    monkeypatch.chdir(work)  # default output directories land here, inside the root
    keys = PromotionKeys(tmp_path / "keys")  # server configuration: outside the root
    sim = ReleaseSimulator(root / "sim", key=keys.release)
    package = sim.package("1.2.3")
    monkeypatch.setenv("RINGWARD_TRUST_ROOT", str(keys.trust_root))
    monkeypatch.setenv("RINGWARD_PROMOTION_SIGNING_KEY", keys.promotion_pem.read_text())
    store = open_store(db_url)
    clock = Clock(NOW + timedelta(minutes=6))
    app = create_app(store=store, artifact_root=tmp_path / "artifacts", clock=clock, promotion_root_dir=root)
    api = Api(client=TestClient(app), store=store, root=tmp_path / "artifacts", clock=clock)
    for name, role in (
        ("viewer", Role.VIEWER),
        ("operator", Role.OPERATOR),
        ("operator2", Role.OPERATOR),
        ("approver", Role.APPROVER),
        ("approver2", Role.APPROVER),
        ("admin", Role.ADMIN),
    ):
        _, api.tokens[name] = store.tokens.create(name=name, role=role, created_by="test", now=NOW - timedelta(days=1))
    try:
        with api.client:
            yield World(api, store, keys, sim, root, work, package)
    finally:
        store.close()


def _channel_request(world: World, who: str = "operator", **extra: Any) -> Any:
    body = {"package_dir": str(world.package), "channel": "stable", "target_ring": "enterprise", **extra}
    return world.post("/promotions/channel-requests", who, body)


def _rollout_request(world: World, rollout_dir: str, who: str = "operator", **extra: Any) -> Any:
    return world.post(
        "/rollouts/promotion-requests", who, {"rollout_dir": rollout_dir, "target_ring": "broad", **extra}
    )


# --- happy paths -----------------------------------------------------------------------------------


def test_channel_request_approve_export(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_dirs = tmp_path / "server-tmp"
    key_dirs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(key_dirs))
    requested = _channel_request(world, output_dir="requests/stable")  # relative to the root
    assert requested.status_code == 201, requested.text
    doc = requested.json()
    assert doc["requested_by"] == "operator" and doc["approval_state"] == "pending" and doc["warnings"] == []
    assert doc["output_dir"] == str(world.root / "requests" / "stable")
    assert list(key_dirs.iterdir()) == []  # the server's key file is gone
    # the requester cannot approve its own request; an approver can
    assert world.post(f"/approvals/{doc['approval_id']}/approve", "operator", {"reason": "x"}).status_code == 403
    decided = world.approve(doc["approval_id"])
    assert decided["state"] == "approved" and decided["decided_by"] == "approver" and decided["warnings"] == []
    world.api.clock.advance(minutes=6)
    body = {
        "package_dir": str(world.package),
        "channel": "stable",
        "output_dir": "exports/stable",
        "promotion_request": f"requests/stable/{REQUEST_FILE}",
    }
    assert world.post("/promotions/endpoint-exports", "approver", body).status_code == 403
    exported = world.post("/promotions/endpoint-exports", "operator", body)
    assert exported.status_code == 201, exported.text
    out = exported.json()
    assert out["approval_id"] == doc["approval_id"] and out["providers"] and Path(out["manifest"]).is_file()
    assert world.api.get(f"/approvals/{doc['approval_id']}").json()["consumed_by"] == "operator"
    again = world.post("/promotions/endpoint-exports", "operator", {**body, "output_dir": "exports/again"})
    assert again.status_code == 409, again.text  # the approval was single-use
    status = world.api.get("/channels/stable").json()["channels"][0]
    assert status["high_water"]["version"] == "1.2.3" and not status["held"]
    assert [c["channel"] for c in world.api.get("/channels").json()["channels"]] == ["stable"]


def test_rollout_request_execute_rollback_and_drilldown(world: World) -> None:
    from ringward.operations.promotion.rollout_ops import show_rollout

    captured = world.capture()
    requested = _rollout_request(world, captured["output_dir"])
    assert requested.status_code == 201, requested.text
    request = requested.json()
    assert request["current_ring"] == "pilot" and request["target_ring"] == "broad"
    world.approve(request["approval_id"])
    world.api.clock.advance(minutes=6)
    body = {"request": request["request_path"], "approval_id": request["approval_id"], "output_dir": "executions/one"}
    assert world.post("/rollouts/executions", "approver", body).status_code == 403  # approvers decide only
    assert world.post("/rollouts/executions", "viewer", body).status_code == 403
    executed = world.post("/rollouts/executions", "operator", body)
    assert executed.status_code == 201, executed.text
    execution = executed.json()
    assert execution["executed_by"] == "operator" and execution["ring_advancement"]["to"] == "broad"
    # replaying the same approved request is a state conflict, and writes nothing
    replay = world.post("/rollouts/executions", "operator2", {**body, "output_dir": "executions/two"})
    assert replay.status_code == 409 and replay.json()["error"] in ("already-executed", "approval-consumed")
    assert not (world.root / "executions" / "two").exists()

    rollback_request = world.post(
        "/rollouts/rollback-requests", "operator2", {"execution": execution["output_dir"], "reason": "crash loop"}
    )
    assert rollback_request.status_code == 201, rollback_request.text
    rr = rollback_request.json()
    world.approve(rr["approval_id"], "approver2")
    rolled = world.post(
        "/rollouts/rollbacks", "operator", {"execution": execution["execution_path"], "approval_id": rr["approval_id"]}
    )
    assert rolled.status_code == 201, rolled.text
    ring = rolled.json()["ring_rollback"]
    assert (ring["from"], ring["to"], rolled.json()["executed_by"]) == ("broad", "pilot", "operator")
    again = world.post(
        "/rollouts/rollbacks",
        "operator",
        {"execution": execution["execution_path"], "approval_id": rr["approval_id"], "output_dir": "rb2"},
    )
    assert again.status_code == 409

    view = world.api.get(f"/rollouts/{captured['rollout_id']}")
    assert view.status_code == 200, view.text
    drill = view.json()
    promotion = drill["promotions"][0]
    assert promotion["request"]["actor"] == "operator"
    votes = [(v["actor"], v["decision"]) for v in promotion["approval"]["votes"]]
    assert votes == [("approver", "approve"), ("operator", "consume")]
    ex = promotion["executions"][0]
    assert ex["actor"] == "operator" and ex["rollback_requests"][0]["actor"] == "operator2"
    assert ex["rollbacks"][0]["actor"] == "operator" and drill["current_status"] == "rolled_back"
    # the same document as `ringward rollout show --json`, and any id of the rollout finds it
    assert drill == show_rollout(world.store, captured["rollout_id"], now=world.api.clock.now)
    assert world.api.get(f"/rollouts/{execution['execution_id']}").json()["rollout_id"] == captured["rollout_id"]
    assert world.api.get("/rollouts/rpe_nope").status_code == 404
    listed = world.api.get("/rollouts", params={"environment": "production"}).json()
    assert [i["rollout_id"] for i in listed["items"]] == [captured["rollout_id"]] and listed["total"] == 1
    steps = world.api.get("/rollouts/search", params={"step": "execution"}).json()["items"]
    assert [s["ref_id"] for s in steps] == [execution["execution_id"]]
    assert world.api.get("/rollouts/search", params={"step": "bogus"}).status_code == 422


# --- roles and the actor -------------------------------------------------------------------------------

WRITES = [
    ("/promotions/channel-requests", "request"),
    ("/promotions/endpoint-exports", "execute"),
    ("/rollouts/promotion-requests", "request"),
    ("/rollouts/executions", "execute"),
    ("/rollouts/rollback-requests", "request"),
    ("/rollouts/rollbacks", "execute"),
    ("/channels/stable/hold", "hold"),
    ("/channels/stable/unhold", "hold"),
]
READS = [
    "/rollouts",
    "/rollouts/search",
    "/rollouts/r-1",
    "/channels",
    "/channels/stable",
    "/windows/check?target=ring:production",
]


def test_roles(world: World) -> None:
    for path, _ in WRITES:
        assert world.api.client.post(path, json={}).status_code == 401, path
        for who in ("viewer", "approver"):
            refused = world.post(path, who, {})
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden", (path, who)
        for who in ("operator", "admin"):
            assert world.post(path, who, {}).status_code == 422, (path, who)  # allowed; the body is empty
    for path in READS:
        assert world.api.client.get(path).status_code == 401, path
        for who in ("viewer", "operator", "approver"):
            assert world.api.get(path, who).status_code in (200, 404), (path, who)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/promotions/channel-requests",
            {"package_dir": "p", "channel": "stable", "target_ring": "r", "requester": "mallory"},
        ),
        (
            "/promotions/channel-requests",
            {"package_dir": "p", "channel": "stable", "target_ring": "r", "signing_key": "-----BEGIN PRIVATE KEY-----"},
        ),
        (
            "/promotions/endpoint-exports",
            {"package_dir": "p", "channel": "stable", "promotion_request": "r", "output_dir": "o", "actor": "mallory"},
        ),
        (
            "/promotions/endpoint-exports",
            {
                "package_dir": "p",
                "channel": "stable",
                "promotion_request": "r",
                "output_dir": "o",
                "windows": "open.yaml",
            },
        ),
        ("/rollouts/promotion-requests", {"rollout_dir": "r", "target_ring": "broad", "requester": "mallory"}),
        ("/rollouts/executions", {"request": "r", "approval_id": "apr_1", "actor": "mallory"}),
        ("/rollouts/rollback-requests", {"execution": "e", "reason": "x", "requester": "mallory"}),
        ("/rollouts/rollbacks", {"execution": "e", "approval_id": "apr_1", "actor": "mallory"}),
        ("/channels/stable/hold", {"reason": "x", "actor": "mallory"}),
    ],
)
def test_the_actor_is_the_token_never_a_body_field(world: World, path: str, body: dict[str, Any]) -> None:
    response = world.post(path, "operator", body)
    assert response.status_code == 422, response.text
    field = next(k for k in ("requester", "actor", "signing_key", "windows") if k in body)
    assert field in response.json()["message"]


def test_writes_record_the_token_name(world: World) -> None:
    held = world.post("/channels/beta/hold", "operator2", {"reason": "incident 42"})
    assert held.status_code == 200, held.text
    assert held.json()["channel"]["hold"]["actor"] == "operator2" and held.json()["warnings"] == []
    assert world.post("/channels/beta/hold", "operator", {"reason": "again"}).status_code == 409
    record = world.store.get_evidence(int(held.json()["evidence"]["evidence_id"]))
    assert record.actor == "operator2"
    # a held channel refuses promotion requests (409) and records the refusal by the caller
    refused = _channel_request(world, channel="beta", target_ring="enterprise")
    assert refused.status_code == 409 and refused.json()["error"] == "channel-held", refused.text
    assert world.post("/channels/beta/unhold", "operator", {"reason": "resolved"}).json()["channel"]["held"] is False
    assert world.post("/channels/beta/unhold", "operator", {"reason": "resolved"}).status_code == 409
    assert world.api.get("/channels/Bad_Name").status_code == 422


# --- paths ---------------------------------------------------------------------------------------------


def test_paths_outside_the_root_are_refused(world: World, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    captured = world.capture(output=outside)  # a real rollout, outside the root
    (world.root / "escape").symlink_to(outside)
    cases = [
        {"rollout_dir": str(outside)},  # absolute, outside
        {"rollout_dir": "../outside"},  # climbs out
        {"rollout_dir": "work/../../outside"},
        {"rollout_dir": "escape"},  # a link inside the root that leads out
        {"rollout_dir": "/etc"},
        {"rollout_dir": captured["output_dir"], "output_dir": "escape/new"},
    ]
    for change in cases:
        response = _rollout_request(world, **{"rollout_dir": "x", **change})
        assert response.status_code == 400, (change, response.text)
        assert response.json()["error"] == "unsafe-path" and "\n" not in response.json()["message"]
    missing = _rollout_request(world, "work/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "path-not-found"
    assert world.api.get("/approvals").json()["total"] == 0  # nothing was opened
    assert not (outside / "new").exists()


def test_paths_named_inside_documents_are_confined(world: World, tmp_path: Path) -> None:
    from ringward.operations.promotion.rollout_ops import request_promotion

    # a rollout inside the root whose recorded package lies outside it
    package = shutil.copytree(world.package, tmp_path / "outside-package")
    rollout = world.capture(package=package)
    refused = _rollout_request(world, rollout["output_dir"])
    assert refused.status_code == 400 and "package_dir" in refused.json()["message"], refused.text
    assert world.api.get("/approvals").json()["total"] == 0
    # a signed request (made in-process) inside the root that names a rollout outside it
    elsewhere = world.capture(output=tmp_path / "outside-rollout", package=package)
    signed = request_promotion(
        world.store,
        rollout_dir=Path(elsewhere["output_dir"]),
        target_ring="broad",
        requester="alice",
        trust_root=world.keys.trust_root,
        signing_key=world.keys.promotion_pem,
        output=world.work / "signed",
        now=world.api.clock.now,
    )
    world.approve(signed["approval_id"])
    execute = world.post(
        "/rollouts/executions", "operator", {"request": signed["request_path"], "approval_id": signed["approval_id"]}
    )
    assert execute.status_code == 400 and "rollout_dir" in execute.json()["message"], execute.text
    assert world.api.get(f"/approvals/{signed['approval_id']}").json()["consumed"] is False


def test_default_outputs_need_the_working_directory_inside_the_root(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured = world.capture()
    monkeypatch.chdir(tmp_path)
    response = _rollout_request(world, captured["output_dir"])
    assert response.status_code == 400 and "output_dir: required" in response.json()["message"]
    assert _rollout_request(world, captured["output_dir"], output_dir="requests/r1").status_code == 201


# --- server configuration ------------------------------------------------------------------------------


def test_missing_server_configuration_is_400(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = world.capture()
    monkeypatch.delenv("RINGWARD_PROMOTION_SIGNING_KEY")
    no_key = _rollout_request(world, captured["output_dir"])
    assert no_key.status_code == 400 and "RINGWARD_PROMOTION_SIGNING_KEY" in no_key.json()["message"]
    assert _channel_request(world).json()["error"] == "not-configured"
    monkeypatch.delenv("RINGWARD_TRUST_ROOT")
    no_root = _rollout_request(world, captured["output_dir"])
    assert no_root.status_code == 400 and "RINGWARD_TRUST_ROOT" in no_root.json()["message"]
    monkeypatch.delenv("RINGWARD_WINDOWS")
    no_policy = world.api.get("/windows/check", params={"target": "ring:production"})
    assert no_policy.status_code == 400 and "RINGWARD_WINDOWS" in no_policy.json()["message"]
    assert world.api.get("/approvals").json()["total"] == 0


def test_a_release_key_cannot_sign_promotions(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWARD_PROMOTION_SIGNING_KEY", world.keys.release_pem.read_text())
    refused = _channel_request(world)
    assert refused.status_code == 409 and refused.json()["error"] == "untrusted-key", refused.text


# --- promotion windows ---------------------------------------------------------------------------------


def test_window_check(world: World) -> None:
    closed = world.api.get("/windows/check", params={"target": "ring:production", "at": "2026-03-07T12:00:00-05:00"})
    assert closed.status_code == 200, closed.text
    doc = closed.json()
    assert doc["allowed"] is False and doc["next_opening"] == "2026-03-09T13:00:00Z"
    assert doc["policy"].endswith("windows.yaml")
    opened = world.api.get(
        "/windows/check",
        params=[("target", "ring:production"), ("target", "channel:stable"), ("at", "2026-03-09T15:00:00Z")],
    )
    assert opened.json()["allowed"] is True and opened.json()["open_until"] == "2026-03-09T21:00:00Z"
    # default: the server clock
    assert world.api.get("/windows/check", params={"target": "ring:broad"}).json()["at"] == "2026-11-22T12:06:00Z"
    for bad in (
        {"target": "production"},
        {},
        {"target": "ring:x", "at": "0001-01-01T00:00:00Z"},
        {"target": "ring:x", "at": "yesterday"},
    ):
        assert world.api.get("/windows/check", params=bad).status_code in (400, 422), bad
    assert world.api.get("/windows/check", params={"target": "ring:x", "at": "2026-03-09T15:00:00"}).status_code == 400


def test_closed_window_is_423_with_the_next_opening_and_break_glass_lets_it_run(world: World) -> None:
    from ringward.core.promotion.windows_policy import break_glass_binding

    world.api.clock.now = FREEZE
    captured = world.capture()
    request = _rollout_request(world, captured["output_dir"]).json()
    world.approve(request["approval_id"])
    body = {"request": request["request_path"], "approval_id": request["approval_id"]}
    refused = world.post("/rollouts/executions", "operator", body)
    assert refused.status_code == 423, refused.text
    doc = refused.json()
    assert doc["error"] == "window-closed" and "year-end" in doc["message"]
    assert doc["next_opening"] == "2027-01-04T14:00:00Z" and doc["next_opening_local"].startswith("2027-01-04T09:00")
    assert world.api.get(f"/approvals/{request['approval_id']}").json()["consumed"] is False
    # an approved break-glass approval bound to this execution lets it through, marked
    binding = break_glass_binding(["ring:broad", "environment:production"], subject=request["request_id"])
    glass = world.post(
        "/approvals",
        "operator2",
        {"action": binding.action, "subject_digest": binding.subject_digest, "target": binding.target},
    ).json()
    world.approve(glass["approval_id"])
    executed = world.post("/rollouts/executions", "operator", {**body, "break_glass_approval_id": glass["approval_id"]})
    assert executed.status_code == 201, executed.text
    assert executed.json()["break_glass"] is True


def test_closed_window_refuses_an_export(world: World) -> None:
    world.api.clock.now = FREEZE
    request = _channel_request(world, output_dir="req").json()
    world.approve(request["approval_id"])
    refused = world.post(
        "/promotions/endpoint-exports",
        "operator",
        {
            "package_dir": str(world.package),
            "channel": "stable",
            "promotion_request": f"req/{REQUEST_FILE}",
            "output_dir": "export",
        },
    )
    assert refused.status_code == 423 and refused.json()["next_opening"] == "2027-01-04T14:00:00Z", refused.text
    assert not (world.root / "export").exists()


# --- events --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_decision_emits_its_prefect_event(api: Api, prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "1")
    created = api.post(
        "/approvals", "operator", {"action": "promote-ring", "subject_digest": "sha256:" + "e" * 64, "target": "broad"}
    ).json()
    decided = api.post(f"/approvals/{created['approval_id']}/approve", "approver", {"reason": "ok"})
    assert decided.status_code == 200 and decided.json()["warnings"] == [], decided.text
    wanted = EventFilter(
        occurred=EventOccurredFilter(
            since=datetime.now(UTC) - timedelta(hours=1), until=datetime.now(UTC) + timedelta(hours=1)
        ),
        event=EventNameFilter(name=["ringward.approval.decided"]),
        resource=EventResourceFilter(id=[f"ringward.approval.{created['approval_id']}"]),
    )
    events: list[Any] = []
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while not events and time.monotonic() < deadline:
            events = list(client.read_events(filter=wanted, limit=50).events)
            if not events:
                time.sleep(0.5)  # the events worker and the server's consumer are asynchronous
    assert len(events) == 1
    payload = events[0].payload
    assert payload["decided_by"] == "approver" and payload["state"] == "approved" and payload["target"] == "broad"


def test_time_filters_at_the_ends_of_the_calendar_are_not_server_errors(world: World) -> None:
    """An offset carrying a bound past year 1 or 9999 clamps it (found by fuzzing)."""
    world.capture()
    low, high = "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:00-23:00"
    assert world.api.get("/rollouts", params={"since": low}).json()["total"] == 1
    assert world.api.get("/rollouts", params={"until": low}).json()["total"] == 0
    assert world.api.get("/rollouts/search", params={"until": high}).json()["total"] >= 1
    assert world.api.get("/rollouts", params={"since": high}).json()["total"] == 0
    assert world.api.get("/rollouts", params={"since": "2026-01-01T00:00:00"}).status_code == 422  # no offset
    assert world.api.get("/evidence", params={"created_from": low}).status_code == 200
    assert world.api.get("/evidence", params={"created_to": high}).status_code == 200
