"""A delivery whose process dies mid-request is redelivered exactly once (issue 13, defect 1).

A claim whose lease expired without an outcome (``in_progress``, ``lease_until < now``) is *stalled*:
``redeliver`` (CLI, operations, the redeliver-failed flow) takes it over through the log's
compare-and-swap claim, so when two redeliveries race exactly one sends it and the other reports it
``held`` (exit 0); the stored event is resent with the same event id and idempotency key. History and
the dashboard show a stalled claim as such until it is taken over.

Time is a parameter: in-process tests move ``now`` with the hooks' clock; the CLI tests use the
hidden ``--at`` option (the lease is 60 s + waves x (budget + timeout), never shorter than a minute).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ringward.core.delivery.policy import SUCCESS_OUTCOMES
from ringward.core.delivery.results import ClaimStatus, DeliveryKey, DeliveryState
from ringward.operations.delivery import delivery_ops as ops
from ringward.operations.delivery.delivery_ops import DeliveryHooks
from ringward.store import Store, open_store
from ringward.store.delivery.delivery_log import DeliveryLog
from tests.connectors.conftest import T0, FakeClock, config_of, make_event, write_config
from tests.connectors.fault_server import FaultServer
from tests.connectors.workers import KILL_DEFAULTS, context, kill_point_worker

PAST_LEASE = timedelta(seconds=300)


# --- a receiver that can hold requests --------------------------------------------------------------


class HoldingReceiver:
    """A loopback HTTP receiver that answers 200 to every request, but holds each one (before
    answering) while ``hold`` is on. It records every request it saw, with its event id."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "event_id": json.loads(body)["event_id"],
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                receiver.arrived.set()
                receiver._open.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client was killed while we held its request
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fleet"

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def event_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(r["event_id"] for r in self.requests)

    def __enter__(self) -> HoldingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[HoldingReceiver]:
    with HoldingReceiver() as running:
        yield running


def wait_for(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- the CLI as a user runs it --------------------------------------------------------------------------


def cli_env(home: Path, db_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "RINGWARD_HOME": str(home)}
    env.pop("RINGWARD_DATABASE_URL", None)
    if db_url is not None:
        env["RINGWARD_DATABASE_URL"] = db_url
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ringward", *args]


def ringward(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cli_command(*args), capture_output=True, text=True, env=env, timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def fleet_config(tmp_path: Path, receiver: HoldingReceiver) -> str:
    destination = {"name": "fleet", "provider": "linux", "url": receiver.url}
    return str(write_config(tmp_path / "c.yaml", destination, **KILL_DEFAULTS))


def at(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_killed_deliver_is_taken_over_by_redeliver_and_delivered_once(
    tmp_path: Path, receiver: HoldingReceiver
) -> None:
    """deliver -> the receiver holds the request -> kill -9 -> redeliver past the lease sends the
    same event again (same id, same idempotency key), once; history shows stalled, then succeeded."""
    env = cli_env(tmp_path / "home")
    event = make_event("evt-killed-0001")
    event_file = tmp_path / "ev.json"
    event_file.write_text(json.dumps(event.to_document()))
    config = fleet_config(tmp_path, receiver)

    receiver.hold()
    started = datetime.now(UTC)
    proc = subprocess.Popen(
        cli_command("connectors", "deliver", str(event_file), "--config", config, "--json"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert receiver.arrived.wait(60), "the deliver process never sent its request"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    receiver.release()
    later = started + PAST_LEASE

    # until the lease expires the claim is live: held by a (dead) run, not failing, not stalled
    history = json.loads(ringward("connectors", "history", "--json", env=env).stdout)
    (item,) = history["items"]
    assert (item["state"], item["stalled"]) == ("in_progress", False) and item["lease_until"]
    early = ringward("connectors", "redeliver", "--config", config, "--json", env=env)
    assert early.returncode == 0, early.stderr
    assert {k: json.loads(early.stdout)[k] for k in ("due", "held", "still_failing")} == {
        "due": 0,
        "held": 1,
        "still_failing": 0,
    }

    # past the lease it is shown stalled ...
    history = json.loads(ringward("connectors", "history", "--json", "--at", at(later), env=env).stdout)
    (item,) = history["items"]
    assert (item["state"], item["stalled"]) == ("in_progress", True)
    table = ringward("connectors", "history", "--at", at(later), env=env).stdout
    assert "in_progress (stalled)" in table
    dashboard = json.loads(ringward("connectors", "dashboard", "--json", "--at", at(later), env=env).stdout)
    assert dashboard["stalled"] == 1 and dashboard["providers"][0]["stalled"] == 1
    assert dashboard["alert_level"] == "warning" and any("stalled" in a for a in dashboard["alerts"])

    # ... and redeliver takes it over and delivers it once
    done = ringward("connectors", "redeliver", "--config", config, "--json", "--at", at(later), env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {k: report[k] for k in ("due", "stalled", "delivered", "held", "still_failing")} == {
        "due": 1,
        "stalled": 1,
        "delivered": 1,
        "held": 0,
        "still_failing": 0,
    }
    first, second = receiver.requests
    assert first["event_id"] == second["event_id"] == event.event_id
    assert first["headers"]["idempotency-key"] == second["headers"]["idempotency-key"] == event.webhook_id

    history = json.loads(ringward("connectors", "history", "--json", "--at", at(later), env=env).stdout)
    (item,) = history["items"]
    assert (item["state"], item["stalled"], item["run_count"]) == ("succeeded", False, 2)
    again = ringward("connectors", "redeliver", "--config", config, "--json", "--at", at(later), env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["due"] == 0
    assert len(receiver.requests) == 2


def stall(store: Store, event_id: str, destination: str, *, at: datetime, lease_seconds: float = 60) -> DeliveryKey:
    """A key claimed by a run that died at ``at`` (its event stored, as the engine stores it first)."""
    log = DeliveryLog(store)
    event = make_event(event_id)
    log.record_events([event], now=at)
    key = DeliveryKey(event_id, "linux", destination)
    claimed = log.claim(
        [key], event_types={event_id: event.event_type}, owner="dead-run", now=at, lease_seconds=lease_seconds
    )
    assert claimed == {key: ClaimStatus.CLAIMED}
    return key


def test_two_redeliver_processes_racing_on_a_stalled_claim_send_it_once(
    db_url: str, tmp_path: Path, receiver: HoldingReceiver
) -> None:
    """Two `connectors redeliver` processes at once on an expired claim: one takes it over and
    sends it (the receiver holds that request until the other process has finished), the other
    reports it held and exits 0."""
    now = datetime.now(UTC)
    with open_store(db_url) as store:
        key = stall(store, "evt-race-0001", "fleet", at=now - timedelta(hours=1))
    config = fleet_config(tmp_path, receiver)
    env = cli_env(tmp_path / "home", db_url)
    receiver.hold()
    args = cli_command("connectors", "redeliver", "--config", config, "--json")
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), 90, "one redeliver process to finish")
        # the other one took the key over and its request is held at the receiver
        assert receiver.arrived.wait(60), "no redeliver process sent the event"
        assert [p.poll() for p in procs].count(None) == 1
        assert receiver.event_ids() == Counter({"evt-race-0001": 1})
    finally:
        receiver.release()
        outputs = [p.communicate(timeout=90) for p in procs]
    for (_, stderr), proc in zip(outputs, procs, strict=True):
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    reports = sorted((json.loads(out) for out, _ in outputs), key=lambda r: r["delivered"])
    loser, winner = reports
    assert (winner["delivered"], winner["held"], winner["still_failing"], winner["stalled"]) == (1, 0, 0, 1)
    assert (loser["delivered"], loser["held"], loser["still_failing"]) == (0, 1, 0)
    assert receiver.event_ids() == Counter({"evt-race-0001": 1})
    with open_store(db_url) as store:
        entry = DeliveryLog(store).get(key)
    assert entry is not None and entry.state is DeliveryState.SUCCEEDED
    assert entry.run_count == 2 and entry.attempt_count == 1


# --- live claims are held, not failing ------------------------------------------------------------------


FailedOnce = tuple[Store, Any, Any, DeliveryKey]


@pytest.fixture
def failed_once(db_url: str, fault_server: FaultServer, clock: FakeClock) -> Iterator[FailedOnce]:
    """A delivery that failed (503) and is due for redelivery two minutes later."""
    route = fault_server.route().script(503)
    config = config_of({"name": "held", "provider": "linux", "url": route.url, "max_attempts": 1})
    store = open_store(db_url)
    try:
        hooks = DeliveryHooks(clock=clock, sleep=clock.sleep, flush_interval=0.01)
        run = ops.deliver_event(make_event("evt-held-0001"), config, store=store, hooks=hooks)
        assert not run.success
        clock.advance(120)
        yield store, config, route, run.results[0].key
    finally:
        store.close()


def test_a_live_claim_of_another_run_is_reported_held_not_failing(
    failed_once: FailedOnce, clock: FakeClock
) -> None:
    store, config, route, key = failed_once
    log = DeliveryLog(store)
    assert log.claim([key], event_types={}, owner="other-run", now=clock.now, lease_seconds=600) == {
        key: ClaimStatus.CLAIMED
    }
    report = ops.redeliver_due(config, store=store, hooks=DeliveryHooks(clock=clock, sleep=clock.sleep))
    assert (report.due, report.held, report.delivered, report.still_failing) == (0, 1, 0, 0)
    assert report.summary()["held"] == 1 and "held 1" in report.summary_line()
    assert len(route.requests) == 1  # nothing sent
    entry = log.get(key)
    assert entry is not None and entry.state is DeliveryState.IN_PROGRESS
    # once that run's lease has passed, the claim is stalled and redelivery takes it over
    clock.advance(601)
    report = ops.redeliver_due(config, store=store, hooks=DeliveryHooks(clock=clock, sleep=clock.sleep))
    assert (report.due, report.stalled, report.held, report.delivered) == (1, 1, 0, 1)
    entry = log.get(key)
    assert entry is not None and entry.state is DeliveryState.SUCCEEDED


def test_a_due_delivery_claimed_by_another_run_meanwhile_is_held_not_failing(
    failed_once: FailedOnce, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue was read while the key was due; another run claimed it before this one could."""
    store, config, route, key = failed_once
    listed = DeliveryLog.due

    def due_then_claimed_elsewhere(self: DeliveryLog, **kwargs: Any) -> Any:
        entries = listed(self, **kwargs)
        DeliveryLog(store).claim([key], event_types={}, owner="other-run", now=clock.now, lease_seconds=600)
        return entries

    monkeypatch.setattr(DeliveryLog, "due", due_then_claimed_elsewhere)
    report = ops.redeliver_due(config, store=store, hooks=DeliveryHooks(clock=clock, sleep=clock.sleep))
    assert (report.due, report.held, report.delivered, report.still_failing) == (1, 1, 0, 0)
    assert [r.status.value for run in report.runs for r in run.results] == ["in-flight"]
    assert len(route.requests) == 1


def test_the_log_lists_stalled_claims_as_due_and_live_ones_as_held(db_url: str) -> None:
    with open_store(db_url) as store:
        log = DeliveryLog(store)
        stalled = stall(store, "evt-stalled", "fleet", at=T0, lease_seconds=60)
        live = stall(store, "evt-live", "fleet", at=T0 + timedelta(seconds=50), lease_seconds=60)
        now = T0 + timedelta(seconds=61)
        assert [e.key for e in log.due(now=now)] == [stalled]
        assert log.held(now=now) == [live]
        assert log.stalled_counts(now=now) == {("linux", "fleet"): 1}
        assert set(log.leases([stalled, live])) == {stalled, live}
        # two takeovers at the same moment: one wins the compare-and-swap
        claims = [
            log.claim([stalled], event_types={}, owner=owner, now=now, lease_seconds=60)[stalled]
            for owner in ("redeliver-a", "redeliver-b")
        ]
        assert claims == [ClaimStatus.CLAIMED, ClaimStatus.IN_FLIGHT]
        assert log.due(now=now) == [] and set(log.held(now=now)) == {stalled, live}


def test_a_stalled_claim_past_its_redelivery_window_expires(db_url: str, fault_server: FaultServer) -> None:
    """A redelivery that died holding its claim after the window closed is expired (kept), not left
    in progress forever; a live claim is never expired."""
    route = fault_server.route().script(503)
    config = config_of(
        {"name": "w", "provider": "linux", "url": route.url, "max_attempts": 1, "redeliver_window_seconds": 600}
    )
    clock = FakeClock()
    hooks = DeliveryHooks(clock=clock, sleep=clock.sleep, flush_interval=0.01)
    with open_store(db_url) as store:
        run = ops.deliver_event(make_event("evt-window"), config, store=store, hooks=hooks)
        key = run.results[0].key
        log = DeliveryLog(store)
        clock.advance(500)
        log.claim([key], event_types={}, owner="dies", now=clock.now, lease_seconds=200)
        clock.advance(150)  # past the window, the claim still live
        assert ops.redeliver_due(config, store=store, hooks=hooks).expired == 0
        clock.advance(100)  # the claim is stalled too
        report = ops.redeliver_due(config, store=store, hooks=hooks)
        assert (report.expired, report.due) == (1, 0)
        entry = log.get(key)
        assert entry is not None and entry.state is DeliveryState.EXPIRED
        assert log.leases([key]) == {}


# --- killed at any point -> eventually delivered exactly once ---------------------------------------------

KILL_POINTS = ("before-request", "during-request", "after-accepted", "after-recorded")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_delivery_killed_at_any_point_is_eventually_delivered_exactly_once(
    point: str, db_url: str, receiver: HoldingReceiver
) -> None:
    ids = [f"evt-kill-{point}-{n}" for n in range(3)]
    ctx = context()
    reached = ctx.Event()
    if point == "during-request":
        receiver.hold()
    proc = ctx.Process(target=kill_point_worker, args=(db_url, receiver.url, ids, point, reached))
    proc.start()
    try:
        if point == "during-request":
            assert receiver.arrived.wait(60), "the worker never sent a request"
        else:
            assert reached.wait(60), f"the worker never reached {point}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    receiver.release()
    seen_before = receiver.event_ids()

    config = config_of({"name": "fleet", "provider": "linux", "url": receiver.url}, **KILL_DEFAULTS)
    later = datetime.now(UTC) + PAST_LEASE
    hooks = DeliveryHooks(clock=lambda: later, flush_interval=0.01)
    with open_store(db_url) as store:
        log = DeliveryLog(store)
        keys = [DeliveryKey(i, "linux", "fleet") for i in ids]
        claimed = [k for k in keys if log.get(k) is not None]
        assert claimed, "the worker was killed before it claimed anything"
        for _ in range(3):
            report = ops.redeliver_due(config, store=store, hooks=hooks)
            assert report.still_failing == 0 and report.held == 0
            if report.due == 0:
                break
        else:  # pragma: no cover - diagnostic
            raise AssertionError("redelivery did not finish")
        entries = [log.get(k) for k in claimed]
    for entry in entries:
        assert entry is not None and entry.state is DeliveryState.SUCCEEDED, entry
        # succeeded exactly once from Ringward's side: one accepted attempt recorded
        assert sum(1 for a in entry.attempts if a.outcome in SUCCESS_OUTCOMES) == 1
    seen = receiver.event_ids()
    # no event lost: every claimed event reached the receiver; duplicates only of the same id (the
    # receiver de-duplicates by it), at most one per run that sent it
    assert set(seen) == {k.event_id for k in claimed}
    assert all(seen[i] <= 2 for i in seen)
    if point in ("before-request", "after-recorded"):
        assert all(seen[i] == 1 for i in seen)
    if point == "after-recorded":
        assert seen == seen_before  # nothing to take over
    assert {r["headers"]["idempotency-key"] for r in receiver.requests} == {
        make_event(i).webhook_id for i in seen
    }
    with open_store(db_url) as store:
        assert ops.redeliver_due(config, store=store, hooks=hooks).due == 0
