"""Every evidence search filter is served by an index: EXPLAIN of the statements a search really
runs (captured from the engine) shows no full scan of ``evidence_record`` and no sort of the
matches, on SQLite and PostgreSQL, after the store refreshed its own planner statistics.

The store holds 4,000 records whose common values repeat across most of the chain and one rare
("needle") value per filter on 1 % of the records -- the shape of a real search, which looks
for one target, one flow run, one failed execution among many. Timing at 1,000,000 records is
``bench/bench_search_api.py``'s job (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import Store, open_store

RECORDS = 4000
#: one record in NEEDLE_EVERY carries the rare value of every filter
NEEDLE_EVERY = 100
START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=1)
BATCH = 100

NEEDLE: dict[str, Any] = {
    "kind": "needle-kind",
    "actor": "needle-actor",
    "flow_run_id": "needle-flow-run",
    "release_version": "9.9.9",
    "runtime": "needle-runtime",
    "channel": "needle-channel",
    "ring": "needle-ring",
    "deployment_target": "needle-target",
    "environment": "needle-env",
    "status": "needle-status",
    "approval_id": "apr_needle",
    "approval_state": "needle-state",
    "execution_status": "needle-exec",
    "provider": "needle-provider",
    "success": False,
}


def _draft(i: int) -> EvidenceDraft:
    if i % NEEDLE_EVERY == 0:
        values = dict(NEEDLE)
    else:
        values = {
            "kind": f"kind-{i % 5}",
            "actor": f"actor-{i % 3}",
            "flow_run_id": f"run-{i // 20}",
            "release_version": f"1.{i % 4}.0",
            "runtime": ["python", "node", None][i % 3],
            "channel": ["beta", "stable"][i % 2],
            "ring": ["pilot", "broad"][i % 2],
            "deployment_target": f"target-{i % 6}",
            "environment": ["dev", "prod"][i % 2],
            "status": ["succeeded", "planned"][i % 2],
            "approval_id": None,
            "approval_state": None,
            "execution_status": None,
            "provider": None,
            "success": True,
        }
    kind, actor, flow_run_id = values.pop("kind"), values.pop("actor"), values.pop("flow_run_id")
    return EvidenceDraft(
        kind=kind, actor=actor, flow_run_id=flow_run_id, subject=EvidenceSubject(**values), payload={"i": i}
    )


@pytest.fixture(scope="module")
def loaded_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store of RECORDS records per backend, statistics refreshed by the store (module-scoped:
    building it is the expensive part, and the tests only read)."""
    from tests.store.dbfixtures import drop_pg_schema, make_pg_schema

    backend = request.param
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'ringward.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        schema, url = make_pg_schema(base)
    try:
        with open_store(url) as store:
            for start in range(0, RECORDS, BATCH):
                drafts = [_draft(i) for i in range(start, start + BATCH)]
                store.append_many(drafts, now=START + STEP * (start // BATCH), batch_size=BATCH)
            # appends refreshed the statistics on their own (every 20 % of growth past 5,000 is
            # later than this store gets): this is the explicit call bulk loads make
            assert store.refresh_statistics() == RECORDS
        yield url
    finally:
        if schema is not None:
            drop_pg_schema(request.getfixturevalue("postgres_url"), schema)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "loaded_url" in metafunc.fixturenames:
        metafunc.parametrize(
            "loaded_url",
            [
                pytest.param("sqlite", id="sqlite"),
                pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
            ],
            indirect=True,
            scope="module",
        )


WINDOW = {"created_from": START + STEP * 10, "created_to": START + STEP * 20}

SEARCHES: list[tuple[str, dict[str, Any]]] = [
    *[(name, {name: value}) for name, value in NEEDLE.items()],
    ("kind+status+target", {k: NEEDLE[k] for k in ("kind", "status", "deployment_target")}),
    ("kind+status", {k: NEEDLE[k] for k in ("kind", "status")}),
    ("ring+environment", {k: NEEDLE[k] for k in ("ring", "environment")}),
    ("provider+success", {k: NEEDLE[k] for k in ("provider", "success")}),
    ("release_version+channel", {k: NEEDLE[k] for k in ("release_version", "channel")}),
    ("window", dict(WINDOW)),
    ("window oldest first", {**WINDOW, "order": "oldest"}),
    ("target+window", {"deployment_target": NEEDLE["deployment_target"], **WINDOW}),
    ("kind+window", {"kind": "kind-1", **WINDOW}),
    ("from only", {"created_from": START + STEP * 30}),
    ("to only", {"created_to": START + STEP * 5}),
    ("before_id page", {"kind": NEEDLE["kind"], "before_id": 3000}),
]


def _captured(store: Store, query: EvidenceQuery) -> list[tuple[str, Any]]:
    """The SELECT statements (with parameters) a search runs, in order."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "evidence_record" in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.search_evidence(query)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    return seen


def _sqlite_problems(store: Store, statement: str, parameters: Any) -> list[str]:
    with store.reading() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    details = [str(row[-1]) for row in rows]
    problems = [d for d in details if d.startswith("SCAN evidence_record") or "TEMP B-TREE" in d]
    if not any(d.startswith("SEARCH evidence_record") for d in details):
        problems.append("no index search of evidence_record: " + " | ".join(details))
    return problems


def _pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _pg_nodes(child)


def _postgresql_problems(store: Store, statement: str, parameters: Any, *, sort_ok: bool = False) -> list[str]:
    with store.reading() as conn:
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    problems = []
    scans = []
    for node in _pg_nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan":
            problems.append(f"Seq Scan on {node.get('Relation Name')}")
        if kind == "Sort" and not sort_ok:
            problems.append(f"Sort by {node.get('Sort Key')}")
        if node.get("Relation Name") == "evidence_record" or kind == "Bitmap Index Scan":
            scans.append(node)
    # every access to the table goes through an index condition (a range, not a filtered walk)
    for node in scans:
        if node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") and not node.get("Index Cond"):
            problems.append(f"{node['Node Type']} on {node.get('Index Name')} without an index condition")
    if not scans:
        problems.append("no scan of evidence_record in the plan")
    return problems


@pytest.mark.parametrize(("name", "filters"), SEARCHES, ids=[name for name, _ in SEARCHES])
def test_every_search_statement_uses_an_index_without_sorting(
    loaded_url: str, name: str, filters: dict[str, Any]
) -> None:
    with open_store(loaded_url) as store:
        query = EvidenceQuery(**filters, limit=5)
        statements = _captured(store, query)
        assert statements, f"{name}: the search ran no statement on evidence_record"
        equalities = len(query.equality_filters())
        problems = {}
        for statement, parameters in statements:
            if store.dialect == "sqlite":
                problems[statement] = _sqlite_problems(store, statement, parameters)
            else:
                # PostgreSQL may intersect two filters' indexes (BitmapAnd) when it expects few
                # rows in common and sort just those: an index-driven plan, allowed for combinations
                problems[statement] = _postgresql_problems(store, statement, parameters, sort_ok=equalities > 1)
        assert all(not found for found in problems.values()), f"{name}: {problems}"


def test_the_page_and_its_total_are_what_the_filters_select(loaded_url: str) -> None:
    """The plans are only worth checking if the answers are right: compare with a Python filter."""
    with open_store(loaded_url) as store:
        every = store.search_evidence(EvidenceQuery(limit=500, total_limit=None)).total
        assert every == RECORDS
        needles = [i for i in range(RECORDS) if i % NEEDLE_EVERY == 0]
        for name, value in NEEDLE.items():
            # no time budget: this checks the count, not how fast a loaded test machine is
            page = store.search_evidence(EvidenceQuery(**{name: value}, limit=7, total_budget_ms=None))
            assert [r.id for r in page.items] == [i + 1 for i in reversed(needles)][:7], name
            assert (page.total, page.total_is_lower_bound) == (len(needles), False), name
        window = store.search_evidence(EvidenceQuery(**WINDOW, limit=500))
        ids = [r.id for r in window.items]
        # batches of BATCH records share one time; the window holds batches 10..19
        assert ids == list(range(20 * BATCH, 15 * BATCH, -1))
        assert window.total == 10 * BATCH and not window.total_is_lower_bound
        oldest = store.search_evidence(EvidenceQuery(**WINDOW, limit=3, order="oldest"))
        assert [r.id for r in oldest.items] == [10 * BATCH + 1, 10 * BATCH + 2, 10 * BATCH + 3]
        # a window before the first record or after the last matches nothing
        for empty in (
            {"created_to": START},
            {"created_from": START + STEP * 1000},
            {"created_from": START + STEP * 5, "created_to": START + STEP * 5},
        ):
            page = store.search_evidence(EvidenceQuery(**empty))
            assert (page.items, page.total) == ((), 0), empty
        assert all(WINDOW["created_from"] <= r.created_at < WINDOW["created_to"] for r in window.items)


# --- the count's time budget -----------------------------------------------------------------------


def test_a_count_past_its_budget_reports_what_the_page_proved(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.store.evidence import repo

    store.append_many([_draft(i) for i in range(1, 400)], now=START)
    exact = store.search_evidence(EvidenceQuery(kind="kind-1", limit=5, total_budget_ms=None))
    assert (exact.total, exact.total_is_lower_bound) == (
        len([i for i in range(1, 400) if i % 5 == 1 and i % 100]),
        False,
    )
    if store.dialect == "sqlite":
        # a clock that jumps a second per reading: the first progress check is past any budget
        ticks = iter(range(10**6))
        monkeypatch.setattr(repo.time, "monotonic", lambda: float(next(ticks)))
        page = store.search_evidence(EvidenceQuery(kind="kind-1", limit=5, offset=2, total_budget_ms=5))
    else:
        # PostgreSQL cancels the statement at statement_timeout: make the count take a while
        real = repo._count_within

        def slow(conn, statement, budget_ms):  # type: ignore[no-untyped-def]
            import sqlalchemy as sa

            slowed = sa.select(sa.func.count()).select_from(sa.select(sa.func.pg_sleep(0.5).label("s")).subquery())
            return real(conn, slowed, budget_ms)

        monkeypatch.setattr(repo, "_count_within", slow)
        page = store.search_evidence(EvidenceQuery(kind="kind-1", limit=5, offset=2, total_budget_ms=5))
    # the page itself is complete; the total is the offset plus the rows it saw (limit + 1)
    assert len(page.items) == 5
    assert (page.total, page.total_is_lower_bound) == (2 + 6, True)
    # the read transaction survived the cancelled count: the store keeps answering
    monkeypatch.undo()
    assert store.search_evidence(EvidenceQuery(kind="kind-1", limit=1, total_budget_ms=None)).total == exact.total


def test_statistics_follow_the_chain_as_it_grows(store: Store) -> None:
    from ringward.store.evidence import repo

    assert repo.statistics_due(0, repo.STATS_MIN_GROWTH) and not repo.statistics_due(0, repo.STATS_MIN_GROWTH - 1)
    assert not repo.statistics_due(100_000, 100_000 + 19_999) and repo.statistics_due(100_000, 120_000)
    with store.reading() as conn:
        assert repo.analyzed_through(conn) == 0
    # appends past the threshold refresh the statistics themselves, once
    store.append_many([_draft(i) for i in range(1, repo.STATS_MIN_GROWTH + 2)], now=START, batch_size=1000)
    with store.reading() as conn:
        assert repo.analyzed_through(conn) == repo.STATS_MIN_GROWTH
        if store.dialect == "sqlite":
            stats = conn.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'evidence_record'").all()
            assert {name for name, _ in stats} >= {"ix_evidence_provider_id", "ix_evidence_created_at_id"}
            assert dict(stats)["ix_evidence_kind_id"].startswith(f"{repo.STATS_MIN_GROWTH} ")
        else:
            rows = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass('evidence_record')"
            ).scalar()
            assert rows == repo.STATS_MIN_GROWTH
    assert store.refresh_statistics(only_if_due=True) == repo.STATS_MIN_GROWTH  # not due: unchanged
    assert store.refresh_statistics() == repo.STATS_MIN_GROWTH + 1


def test_a_release_in_a_channel_is_served_by_its_own_index(loaded_url: str) -> None:
    """Migration 0009: release_version + channel pages and counts through
    ``(release_version, channel, id)`` rather than reading each record's channel from the table."""
    with open_store(loaded_url) as store:
        query = EvidenceQuery(release_version=NEEDLE["release_version"], channel=NEEDLE["channel"], limit=5)
        statements = _captured(store, query)
        assert statements
        for statement, parameters in statements:
            with store.reading() as conn:
                if store.dialect == "sqlite":
                    plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                                  parameters).all())
                else:
                    raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
                    plan = json.dumps(raw)
            assert "ix_evidence_release_version_channel_id" in plan, plan
