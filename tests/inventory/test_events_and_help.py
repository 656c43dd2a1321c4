"""Events the inventory decisions emit (as data), and the CLI group's registration."""

from __future__ import annotations

import pytest

from ringward.operations.inventory.events import drift_event, freshness_events, ingested_event
from tests.inventory.conftest import cli


def test_events_only_for_news() -> None:
    ingested = {"status": "ingested", "inventory_id": "eii_1", "provider": "jamf", "channel": "stable",
                "observed_at": "t", "endpoint_count": 3, "observations": "x.json"}
    # ids only: the automation looks everything else up in the store
    assert ingested_event(ingested) == ("ringward.inventory.ingested", "ringward.inventory.jamf",
                                        {"inventory_id": "eii_1", "channel": "stable"})
    assert ingested_event({**ingested, "status": "duplicate"}) is None
    drift = {"drift_status": "drift_detected", "reconciliation_id": "mer_1", "alert_level": "critical",
             "release": {}, "channel": None, "report": "r.json"}
    assert drift_event(drift)[:2] == ("ringward.inventory.drift-detected", "ringward.channel.unassigned")
    assert drift_event({**drift, "drift_status": "aligned"}) is None
    change = {"state": "scope:jamf/stable/t1", "from": "healthy", "to": "warning"}
    assert freshness_events({"changes": [change]}) == [
        ("ringward.inventory.freshness-changed", "ringward.inventory.scope.jamf.stable.t1", change)]
    assert freshness_events({"changes": []}) == []


def test_group_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "inventory", "--help")
    assert code == 0
    for command in ("ingest", "reconcile", "freshness"):
        assert command in out
    code, _, err = cli(capsys, "inventory", "reconcile", "pkg")
    assert code == 2 and "OBSERVATIONS" in err
