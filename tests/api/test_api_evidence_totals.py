"""GET /evidence totals (bounded by default, exact or none on request), the runtime filter, and
that the page built straight from the rows is the document the records themselves give."""

from __future__ import annotations

from datetime import timedelta

from ringward.core.evidence.query import DEFAULT_TOTAL_LIMIT, EvidenceQuery
from ringward.core.evidence.records import EvidenceArtifact, EvidenceDraft, EvidenceSubject
from tests.api.conftest import T0, Api


def _fill(api: Api, count: int, **subject: object) -> None:
    drafts = [
        EvidenceDraft(
            kind="release-package-verification",
            actor="bot",
            flow_run_id=f"run-{i % 3}",
            subject=EvidenceSubject(**{"runtime": "python", "success": i % 4 != 0, **subject}),  # type: ignore[arg-type]
            payload={"i": i, "nested": {"ü": [1, 2.5, None, True]}},
            bundle_dir="bundles/x" if i == 0 else None,
            artifacts=(EvidenceArtifact(name="a.json", sha256="0" * 64, size_bytes=3),) if i == 0 else (),
        )
        for i in range(count)
    ]
    api.store.append_many(drafts, now=T0)


def test_total_is_bounded_by_default_exact_or_absent_on_request(api: Api) -> None:
    _fill(api, DEFAULT_TOTAL_LIMIT + 20)
    # the count also has a 15 ms budget: on a busy machine one attempt can run out of it and report only
    # what its page proved (3, a lower bound too); the limit must show within a few attempts
    totals = []
    for _ in range(5):
        bounded = api.get("/evidence", params={"metadata_kind": "release-package-verification", "limit": 3}).json()
        totals.append((bounded["total"], bounded["total_is_lower_bound"]))
        if totals[-1] == (DEFAULT_TOTAL_LIMIT, True):
            break
    assert set(totals) <= {(DEFAULT_TOTAL_LIMIT, True), (3, True)} and totals[-1] == (DEFAULT_TOTAL_LIMIT, True), totals
    exact = api.get(
        "/evidence", params={"metadata_kind": "release-package-verification", "limit": 3, "total": "exact"}
    ).json()
    assert (exact["total"], exact["total_is_lower_bound"]) == (DEFAULT_TOTAL_LIMIT + 20, False)
    none = api.get("/evidence", params={"metadata_kind": "release-package-verification", "total": "none"}).json()
    assert none["total"] is None and none["total_is_lower_bound"] is False and len(none["items"]) == 50
    # no filter: the count is the chain's length, exact whatever its size
    every = api.get("/evidence", params={"limit": 1}).json()
    assert (every["total"], every["total_is_lower_bound"]) == (api.store.count_evidence(), False)
    assert every["total"] >= DEFAULT_TOTAL_LIMIT + 20
    refused = api.get("/evidence", params={"total": "some"})
    assert refused.status_code == 422 and refused.json()["error"] == "bad-input"
    assert "total" in refused.json()["message"]


def test_runtime_is_a_filter_and_pages_match_the_records_documents(api: Api) -> None:
    _fill(api, 5)
    _fill(api, 2, runtime="node")
    page = api.get("/evidence", params={"runtime": "node"}).json()
    assert [item["subject"]["runtime"] for item in page["items"]] == ["node", "node"]
    assert page["total"] == 2 and page["next_before_id"] is None
    full = api.get("/evidence", params={"limit": 500}).json()
    expected = api.store.search_evidence(EvidenceQuery(limit=500)).to_document()
    assert full == expected
    first = next(item for item in reversed(full["items"]) if item["kind"] == "release-package-verification")
    assert first["artifacts"] == [{"name": "a.json", "sha256": "0" * 64, "size_bytes": 3}]
    assert first["payload"]["nested"] == {"ü": [1, 2.5, None, True]} and first["bundle_dir"] == "bundles/x"
    assert {item["subject"]["success"] for item in full["items"] if item["kind"] != "api-token"} == {True, False}
    flow = api.get("/evidence", params={"flow_run_id": "run-1", "success": "false"}).json()
    assert [item["payload"]["i"] for item in flow["items"]] == [4] and flow["total"] == 1
    none = api.get("/evidence", params={"flow_run_id": "run-2", "success": "false", "runtime": "node"}).json()
    assert none["items"] == [] and (none["total"], none["total_is_lower_bound"]) == (0, False)


def test_a_window_pages_by_id_and_counts_exactly(api: Api) -> None:
    for minute in range(6):
        api.store.append_many(
            [EvidenceDraft(kind="k", actor="bot", payload={"m": minute, "j": j}) for j in range(3)],
            now=T0 + timedelta(minutes=minute),
        )
    window = {
        "created_from": (T0 + timedelta(minutes=1)).isoformat(),
        "created_to": (T0 + timedelta(minutes=3)).isoformat(),
    }
    page = api.get("/evidence", params={**window, "limit": 4}).json()
    assert [item["payload"]["m"] for item in page["items"]] == [2, 2, 2, 1]
    assert (page["total"], page["total_is_lower_bound"]) == (6, False)
    rest = api.get("/evidence", params={**window, "limit": 4, "before_id": page["next_before_id"]}).json()
    assert [item["payload"]["m"] for item in rest["items"]] == [1, 1] and rest["next_before_id"] is None
    oldest = api.get("/evidence", params={**window, "order": "oldest", "limit": 2}).json()
    assert [(i["payload"]["m"], i["payload"]["j"]) for i in oldest["items"]] == [(1, 0), (1, 1)]
    later = api.get("/evidence", params={"created_from": (T0 + timedelta(hours=1)).isoformat()}).json()
    assert later["items"] == [] and later["total"] == 0
