"""Inventory test fixtures: a signed package, pinned keys, a store (SQLite and PostgreSQL), payload builders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.store import Store, open_store
from tests.promotion.conftest import PromotionKeys
from tests.release.simulator import NOW, ReleaseSimulator
from tests.store.dbfixtures import db_url, store  # noqa: F401

RUNTIME = "rt"


def at(hours: float = 0) -> datetime:
    return NOW + timedelta(hours=hours)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class InventoryWorld:
    store: Store
    keys: PromotionKeys
    sim: ReleaseSimulator
    work: Path
    package: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.package / f"{RUNTIME}.endpoint-deployment.json").read_text()))

    def targets(self) -> dict[str, str]:
        return {t["id"]: t["binary_sha256"] for t in self.manifest["deployment_targets"]}

    def write(self, name: str, payload: Any) -> Path:
        path = self.work / name
        path.write_text(json.dumps(payload))
        return path

    def ingest(self, payload: Any, *, provider: str = "linux", name: str = "source.json", **extra: Any
               ) -> dict[str, Any]:
        from ringward.operations.inventory.ingest import ingest_inventory

        extra.setdefault("now", at(1))
        extra.setdefault("software", (RUNTIME,))
        extra.setdefault("actor", "inventory-bot")
        return ingest_inventory(self.store, source=self.write(name, payload), provider=provider, **extra)

    def reconcile(self, observations: Path, **extra: Any) -> dict[str, Any]:
        from ringward.operations.inventory.reconcile import reconcile_inventory

        extra.setdefault("now", at(2))
        extra.setdefault("actor", "inventory-bot")
        return reconcile_inventory(self.store, package_dir=extra.pop("package", self.package),
                                   observations=observations, trust_root=extra.pop("trust_root",
                                                                                   self.keys.trust_root), **extra)

    def aligned_endpoints(self, *, seen: datetime | None = None) -> list[dict[str, Any]]:
        """One collector record per deployment target, each on the release's version and binary."""
        when = iso(seen or at(0.5))
        return [{"endpoint_id": f"host-{i}", "deployment_target": target, "installed_version": "1.2.3",
                 "binary_sha256": sha, "last_seen_at": when} for i, (target, sha) in enumerate(self.targets().items())]


@pytest.fixture
def inventory_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(home / "evidence"))
    monkeypatch.setenv("RINGWARD_ACTOR", "inventory-bot")
    monkeypatch.delenv("RINGWARD_TRUST_ROOT", raising=False)
    monkeypatch.chdir(work)
    yield work


@pytest.fixture
def world(inventory_env: Path, db_url: str, tmp_path: Path) -> Iterator[InventoryWorld]:  # noqa: F811
    keys = PromotionKeys(tmp_path / "keys")
    sim = ReleaseSimulator(tmp_path / "sim", key=keys.release)
    package = sim.package("1.2.3")
    opened = open_store(db_url)
    try:
        yield InventoryWorld(opened, keys, sim, inventory_env, package)
    finally:
        opened.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from ringward.cli.main import run

    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def records(opened: Store, kind: str, **filters: Any) -> list[Any]:
    from ringward.core.evidence.query import EvidenceQuery

    return list(opened.search_evidence(EvidenceQuery(kind=kind, order="oldest", limit=500, **filters)).items)
