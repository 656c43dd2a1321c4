"""A pull's cursor is compare-and-set with its evidence record (SQLite and PostgreSQL): of two pulls of
one source started from the same state, one keeps its cursor and the other changes nothing but is
recorded as failed; an incremental run whose cursor moved meanwhile stops before ingesting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringward.core.errors import StoreConflictError
from ringward.operations.inventory import pull_ops
from ringward.operations.inventory.pull_state import PULL_NAMESPACE, snapshots_dir
from tests.inventory.conftest import records
from tests.inventory.pull_emulators import T0, PullLab, lab  # noqa: F401


def plan(lab: PullLab, at: timedelta = timedelta(0)) -> pull_ops.PullPlan:  # noqa: F811
    return pull_ops.plan_pull(lab.store, config_path=lab.config, provider="fleet", now=T0 + at, actor="bot",
                              software=("rt",), page_size=5, hooks=lab.hooks())


def fetch(lab: PullLab, chosen: pull_ops.PullPlan) -> list[dict[str, object]]:  # noqa: F811
    return [pull_ops.fetch_batch(lab.store, chosen, chosen.start, now=T0, hooks=lab.hooks())]


def test_two_pulls_of_one_source_keep_one_cursor(lab: PullLab) -> None:  # noqa: F811
    lab.seed("fleet", 4)
    first, second = plan(lab), plan(lab)
    first_pages, second_pages = fetch(lab, first), fetch(lab, second)
    kept = pull_ops.finish_pull(lab.store, first, first_pages, now=T0)
    with pytest.raises(StoreConflictError, match="another pull of this source recorded its cursor first"):
        pull_ops.finish_pull(lab.store, second, second_pages, now=T0)
    state = lab.store.state.get(PULL_NAMESPACE, "fleet/fleetdm")
    assert state is not None and state.version == 1 and state.value["run_id"] == first.run_id
    assert [r.payload["status"] for r in records(lab.store, pull_ops.KIND_PULL)] == ["pulled", "failed"]
    assert [p.name for p in snapshots_dir().iterdir()] == [state.value["snapshot"]["file"]]  # the winner's stays
    assert kept["ingestion"]["status"] == "ingested"

    # an incremental run whose cursor another run moved stops before ingesting anything
    lab.set_host("fleet", 9, version="1.2.4", at=T0 + timedelta(hours=1))
    late, early = plan(lab, timedelta(hours=2)), plan(lab, timedelta(hours=2))
    assert late.mode == early.mode == "incremental"
    late_pages, early_pages = fetch(lab, late), fetch(lab, early)
    pull_ops.finish_pull(lab.store, early, early_pages, now=T0 + timedelta(hours=2))
    with pytest.raises(StoreConflictError, match="cursor changed since this run started"):
        pull_ops.finish_pull(lab.store, late, late_pages, now=T0 + timedelta(hours=2))
    assert len(records(lab.store, "endpoint-inventory-ingestion")) == 2
