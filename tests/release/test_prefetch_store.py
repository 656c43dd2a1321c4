"""A store prefetched by an operation that then failed is never used under another home."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringward.operations.release import release_ops
from ringward.store import open_store


def _count(home: Path) -> int:
    with open_store(f"sqlite:///{home / 'ringward.db'}") as store:
        return store.count_evidence()


def test_a_stale_prefetched_store_of_another_home_is_not_written(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGWARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("RINGWARD_EVIDENCE_ROOT", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("RINGWARD_HOME", str(first))
    release_ops.prefetch_store()  # an operation prefetched, then failed before recording
    monkeypatch.setenv("RINGWARD_HOME", str(second))
    reference = release_ops.record_result("release-package-verification", {"valid": True}, valid=True,
                                          version="1.2.3", runtime="rt")
    assert _count(second) == 1
    assert not (first / "ringward.db").exists() or _count(first) == 0
    with open_store(f"sqlite:///{second / 'ringward.db'}") as store:
        assert store.get_evidence(int(reference["evidence_id"])).kind == "release-package-verification"
