"""Remediation fixtures: an inventory world (signed package, store on SQLite and PostgreSQL) whose trust
root also pins a remediation-role key, reconciliation reports with drift, and shortcuts for each step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.approvals.rules import Decision
from ringward.core.trust.root import Role, TrustRoot
from ringward.store import open_store
from tests.inventory.conftest import InventoryWorld, at, inventory_env, iso  # noqa: F401
from tests.promotion.conftest import PromotionKeys
from tests.release.simulator import NOW, ReleaseSimulator, trusted
from tests.store.dbfixtures import db_url, store  # noqa: F401


@dataclass
class RemediationKeys(PromotionKeys):
    """PromotionKeys plus a pinned remediation-role key."""

    remediation: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.remediation_pem = self._pem("remediation.pem", self.remediation)

    def trust(self) -> TrustRoot:
        return TrustRoot(
            updated_at=NOW,
            keys=(trusted(self.release, "release-1"), trusted(self.promotion, "promotion-1", roles=(Role.PROMOTION,)),
                  trusted(self.remediation, "remediation-1", roles=(Role.REMEDIATION,))),
            thresholds={Role.RELEASE: 1, Role.PROMOTION: 1, Role.REMEDIATION: 1},
        )


def drifted_fleet(world: InventoryWorld, *, behind: str = "v1.2.2") -> list[dict[str, object]]:
    """Version drift, checksum drift, a stale endpoint, a missing target and an unknown target."""
    fleet = world.aligned_endpoints()
    fleet[0]["installed_version"] = behind
    fleet[1]["binary_sha256"] = "f" * 64
    fleet[2]["last_seen_at"] = iso(at(-72))
    fleet.pop(3)
    fleet.append({"endpoint_id": "rogue", "deployment_target": "rogue-target", "installed_version": "1.2.3"})
    return fleet


@dataclass
class RemediationWorld:
    inv: InventoryWorld
    keys: RemediationKeys
    counter: list[int] = field(default_factory=lambda: [0])

    @property
    def store(self) -> Any:
        return self.inv.store

    def reconciliation(self, fleet: list[dict[str, object]] | None = None, *, hours: float = 2) -> Path:
        """A reconciliation report made by the inventory operations (drift unless ``fleet`` says otherwise)."""
        self.counter[0] += 1
        n = self.counter[0]
        ingested = self.inv.ingest({"endpoints": fleet if fleet is not None else drifted_fleet(self.inv)},
                                   name=f"source-{n}.json", output=self.inv.work / f"obs-{n}", now=at(hours - 1))
        result = self.inv.reconcile(Path(ingested["observations"]), now=at(hours),
                                    output=self.inv.work / f"recon-{n}")
        return Path(result["report"])

    def request(self, report: Path, *, requester: str = "alice", strategy: str = "mixed", key: Path | None = None,
                now: datetime | None = None, **extra: Any) -> dict[str, Any]:
        from ringward.operations.remediation.remediation_ops import request_remediation

        return request_remediation(self.store, reconciliation=report, strategy=strategy, requester=requester,
                                   signing_key=key or self.keys.remediation_pem, trust_root=self.keys.trust_root,
                                   now=now or at(3), **extra)

    def approve(self, approval_id: str, *, actor: str = "bob", now: datetime | None = None) -> Any:
        from ringward.operations.approvals.approval_ops import decide_approval

        return decide_approval(self.store, approval_id, decision=Decision.APPROVE, actor=actor, reason="CAB ok",
                               now=now or at(3.5))

    def execute(self, request_file: str | Path, approval_id: str, *, actor: str = "carol",
                now: datetime | None = None, **extra: Any) -> dict[str, Any]:
        from ringward.operations.remediation.remediation_ops import execute_remediation

        return execute_remediation(self.store, request=Path(request_file), approval_id=approval_id, actor=actor,
                                   trust_root=self.keys.trust_root, now=now or at(4), **extra)

    def executed(self) -> tuple[dict[str, Any], dict[str, Any]]:
        requested = self.request(self.reconciliation())
        self.approve(requested["approval_id"])
        return requested, self.execute(requested["request"], requested["approval_id"])

    @staticmethod
    def load(path: str | Path) -> dict[str, Any]:
        return dict(json.loads(Path(path).read_text()))


@pytest.fixture
def rw(inventory_env: Path, db_url: str, tmp_path: Path) -> Iterator[RemediationWorld]:  # noqa: F811
    keys = RemediationKeys(tmp_path / "keys")
    sim = ReleaseSimulator(tmp_path / "sim", key=keys.release)
    package = sim.package("1.2.3")
    opened = open_store(db_url)
    try:
        yield RemediationWorld(InventoryWorld(opened, keys, sim, inventory_env, package), keys)
    finally:
        opened.close()
