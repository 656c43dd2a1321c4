"""Freshness state changes become connector notifications: once per change (healthy -> warning ->
critical -> healthy, a source going silent and delivering again), never again for the same state, and
retried by the next evaluation when the delivery failed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.inventory.freshness import Thresholds
from ringward.operations.delivery.delivery_ops import DeliveryHooks, load_connector_config
from ringward.operations.inventory.freshness import NOTIFY_NAMESPACE, evaluate_freshness, notify_freshness_changes
from tests.inventory.pull_emulators import T0, PullLab, lab  # noqa: F401

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
DAY = Thresholds(timedelta(hours=24), timedelta(hours=48))


def cycle(lab: PullLab, hours: float) -> dict[str, Any]:  # noqa: F811
    now = T0 + timedelta(hours=hours)
    evaluate_freshness(lab.store, now=now, actor="freshness-cron", thresholds=DAY)
    return notify_freshness_changes(lab.store, load_connector_config(lab.config), now=now, actor="freshness-cron",
                                    hooks=DeliveryHooks(sleep=lambda _: None))


def queued(lab: PullLab) -> list[dict[str, Any]]:  # noqa: F811
    directory = lab.work / "queue"
    return [json.loads(p.read_text())["event"] for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []


def test_a_change_is_notified_once_and_again_on_recovery(lab: PullLab) -> None:  # noqa: F811
    lab.seed("fleet", 3)
    lab.pull("fleet", at=T0, channel="stable")  # newest inventory clock: T0 - 1h
    quiet = cycle(lab, 0)
    assert quiet["pending"] == 0 and quiet["delivered"] == [] and queued(lab) == []  # healthy: nothing to say
    warning = cycle(lab, 24)
    assert {(d["state"], d["from"], d["to"]) for d in warning["delivered"]} == {
        ("scope:fleet/stable/linux-systemd-amd64-workstation", "healthy", "warning"),
        ("source:fleet/stable", "healthy", "warning")}
    assert {e["event_type"] for e in queued(lab)} == {"ringward.inventory.freshness.warning",
                                                     "ringward.inventory.freshness.source-silent"}
    assert all(d["destinations"] == ["ops-queue"] for d in warning["delivered"])  # the others' routing skips it
    assert cycle(lab, 25)["pending"] == 0 and cycle(lab, 30)["pending"] == 0  # same state: not re-notified
    critical = cycle(lab, 48)
    assert {d["to"] for d in critical["delivered"]} == {"critical"} and len(queued(lab)) == 4
    assert cycle(lab, 49)["pending"] == 0
    for n in (1, 2, 3):
        lab.set_host("fleet", n, version="1.2.3", at=T0 + timedelta(hours=49))
    lab.pull("fleet", at=T0 + timedelta(hours=50), channel="stable")
    recovered = cycle(lab, 50)
    assert {(d["from"], d["to"]) for d in recovered["delivered"]} == {("critical", "healthy")}
    events = queued(lab)
    assert len(events) == 6 and "ringward.inventory.freshness.source-resumed" in {e["event_type"] for e in events}
    assert any(e["title"] == "Inventory source fleet/stable is delivering again" for e in events)
    assert cycle(lab, 51)["pending"] == 0 and len(queued(lab)) == 6
    notified = lab.store.state.get(NOTIFY_NAMESPACE, "source:fleet/stable")
    assert notified is not None and notified.value["severity"] == "healthy" and notified.version == 3


def test_a_failed_notification_is_retried_by_the_next_evaluation(lab: PullLab) -> None:  # noqa: F811
    lab.seed("fleet", 2)
    lab.pull("fleet", at=T0, channel="beta")
    blocker = Path(lab.work / "queue")
    blocker.write_text("not a directory")  # the queue cannot take files
    first = cycle(lab, 30)
    assert first["ok"] is False and len(first["failed"]) == 2 and first["delivered"] == []
    assert lab.store.state.list(NOTIFY_NAMESPACE) == []
    blocker.unlink()
    retried = cycle(lab, 31)  # no state change since, but the change is still not notified
    assert retried["ok"] and {d["event_id"] for d in retried["delivered"]} == {f["event_id"] for f in first["failed"]}
    assert len(queued(lab)) == 2 and cycle(lab, 32)["pending"] == 0
