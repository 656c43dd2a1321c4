"""Generic key/value state (high-water marks, suppression windows) with compare-and-set."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ringward.core.errors import InputError, StoreConflictError
from ringward.store import Store

T0 = datetime(2026, 8, 1, tzinfo=UTC)


def test_put_get_list_and_versions(store: Store) -> None:
    assert store.state.get("high-water", "stable") is None
    first = store.state.put("high-water", "stable", {"version": "1.2.3"}, actor="ci", now=T0)
    assert first.version == 1
    second = store.state.put("high-water", "stable", {"version": "1.2.4"}, actor="ci", now=T0, expected_version=1)
    assert second.version == 2
    entry = store.state.get("high-water", "stable")
    assert entry is not None and entry.value == {"version": "1.2.4"} and entry.updated_by == "ci"
    assert entry.updated_at == T0
    store.state.put("high-water", "beta", [1, 2.5, None, "x"], actor="ci", now=T0)
    assert [e.key for e in store.state.list("high-water")] == ["beta", "stable"]
    assert store.state.list("elsewhere") == []


def test_compare_and_set_refuses_stale_writers(store: Store) -> None:
    store.state.put("suppression", "k", {"until": "t1"}, actor="a", now=T0, expected_version=0)
    with pytest.raises(StoreConflictError, match="expected version 0, found 1"):
        store.state.put("suppression", "k", {"until": "t2"}, actor="b", now=T0, expected_version=0)
    with pytest.raises(StoreConflictError, match="expected version 5, found 1"):
        store.state.put("suppression", "k", {"until": "t2"}, actor="b", now=T0, expected_version=5)
    entry = store.state.get("suppression", "k")
    assert entry is not None and entry.value == {"until": "t1"}


def test_delete_with_and_without_version(store: Store) -> None:
    store.state.put("n", "a", 1, actor="x", now=T0)
    with pytest.raises(StoreConflictError):
        store.state.delete("n", "a", expected_version=9)
    assert store.state.delete("n", "a", expected_version=1) is True
    assert store.state.delete("n", "a") is False


@pytest.mark.parametrize("value", [float("nan"), object(), {"x": float("inf")}])
def test_values_must_be_plain_json(store: Store, value: object) -> None:
    with pytest.raises(InputError, match="not plain JSON"):
        store.state.put("n", "k", value, actor="x", now=T0)


def test_empty_names_are_refused(store: Store) -> None:
    with pytest.raises(InputError, match="non-empty"):
        store.state.put("", "k", 1, actor="x", now=T0)
