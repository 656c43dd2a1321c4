"""Shared fixtures for promotion tests (append generic fixtures; do not rename existing ones)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.trust.keys import private_key_pem
from ringward.core.trust.root import Role, TrustRoot
from ringward.operations.trust.keys import save_trust_root
from ringward.store import Store, open_store
from tests.release.simulator import NOW, ReleaseSimulator, trusted
from tests.store.dbfixtures import db_url, store  # noqa: F401


@dataclass
class PromotionKeys:
    """A release key, a pinned promotion key, and keys that must be refused, as PEM files, plus
    the trust root pinning the first two."""

    root: Path
    release: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    promotion: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    unpinned: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.trust_root = self.root / "trust-root.json"
        save_trust_root(self.trust_root, self.trust(), overwrite=True)
        self.promotion_pem = self._pem("promotion.pem", self.promotion)
        self.release_pem = self._pem("release.pem", self.release)
        self.unpinned_pem = self._pem("unpinned.pem", self.unpinned)

    def trust(self) -> TrustRoot:
        return TrustRoot(
            updated_at=NOW,
            keys=(trusted(self.release, "release-1"), trusted(self.promotion, "promotion-1", roles=(Role.PROMOTION,))),
            thresholds={Role.RELEASE: 1, Role.PROMOTION: 1},
        )

    def _pem(self, name: str, key: Ed25519PrivateKey) -> Path:
        path = self.root / name
        path.write_bytes(private_key_pem(key))
        path.chmod(0o600)
        return path


@pytest.fixture
def promotion_keys(tmp_path: Path) -> PromotionKeys:
    return PromotionKeys(tmp_path / "keys")


@pytest.fixture
def promotion_sim(tmp_path: Path, promotion_keys: PromotionKeys) -> ReleaseSimulator:
    """A release simulator whose release key is the one ``promotion_keys`` pins."""
    return ReleaseSimulator(tmp_path / "sim", key=promotion_keys.release)


@pytest.fixture
def promotion_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    """RINGWARD_HOME / database / evidence root for in-process runs, cwd in a scratch directory
    (default output directories land there); yields the working directory."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(home / "evidence"))
    monkeypatch.setenv("RINGWARD_ACTOR", "release-manager")
    for name in ("RINGWARD_SIGNING_KEY", "RINGWARD_TRUST_ROOT", "RINGWARD_PROMOTION_SIGNING_KEY",
                 "CAVRA_ROLLOUT_PROMOTION_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    yield work


@pytest.fixture
def promotion_store(promotion_env: Path, db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def later(hours: float = 1) -> datetime:
    """A time after the simulator's NOW (tests pass time explicitly)."""
    return NOW + timedelta(hours=hours)




@dataclass
class RolloutWorld:
    """A signed package, pinned keys and a store, with one call per rollout step (in-process)."""

    store: Store
    keys: PromotionKeys
    sim: ReleaseSimulator
    work: Path
    package: Path

    def ops(self) -> Any:
        from ringward.operations.promotion import rollout_ops

        return rollout_ops

    def capture(self, *, status: str = "staged", ring: str = "pilot", environment: str = "production",
                change_record: str | None = "CHG-1001", output: Path | None = None, at: datetime = NOW,
                **extra: Any) -> dict[str, Any]:
        return dict(self.ops().capture_rollout(
            self.store, package_dir=self.package, environment=environment, ring=ring, status=status,
            change_record=change_record, trust_root=self.keys.trust_root,
            output=output or self.work / f"rollout-{ring}-{status}-{len(list(self.work.iterdir()))}",
            actor="release-manager", now=at, **extra))

    def request(self, rollout_dir: str | Path, *, target_ring: str = "broad", requester: str = "alice",
                key: Path | None = None, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
        return dict(self.ops().request_promotion(
            self.store, rollout_dir=Path(rollout_dir), target_ring=target_ring, requester=requester,
            signing_key=key or self.keys.promotion_pem, trust_root=self.keys.trust_root, now=at or later(0.1),
            **extra))

    def approve(self, approval_id: str, *, actor: str = "bob", at: datetime | None = None,
                reason: str = "CAB approved") -> Any:
        from ringward.core.approvals.rules import Decision
        from ringward.operations.approvals.approval_ops import decide_approval

        return decide_approval(self.store, approval_id, decision=Decision.APPROVE, actor=actor, reason=reason,
                               now=at or later(0.2))

    def execute(self, request_path: str | Path, approval_id: str, *, actor: str = "carol",
                at: datetime | None = None, **extra: Any) -> dict[str, Any]:
        return dict(self.ops().execute_promotion(
            self.store, request_path=Path(request_path), approval_id=approval_id, actor=actor,
            trust_root=self.keys.trust_root, now=at or later(0.3), **extra))

    def request_rollback(self, execution_path: str | Path, *, requester: str = "dave",
                         reason: str = "crash loop on pilot laptops", at: datetime | None = None,
                         key: Path | None = None, **extra: Any) -> dict[str, Any]:
        return dict(self.ops().request_rollback(
            self.store, execution_path=Path(execution_path), requester=requester, reason=reason,
            signing_key=key or self.keys.promotion_pem, trust_root=self.keys.trust_root,
            now=at or later(0.4), **extra))

    def rollback(self, execution_path: str | Path, approval_id: str, *, actor: str = "erin",
                 at: datetime | None = None, **extra: Any) -> dict[str, Any]:
        return dict(self.ops().execute_rollback(
            self.store, execution_path=Path(execution_path), approval_id=approval_id, actor=actor,
            trust_root=self.keys.trust_root, now=at or later(0.5), **extra))

    def promoted(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """capture (staged, pilot) -> request broad -> approve -> execute."""
        captured = self.capture()
        requested = self.request(captured["output_dir"])
        self.approve(requested["approval_id"])
        executed = self.execute(requested["request_path"], requested["approval_id"])
        return captured, requested, executed


@pytest.fixture
def rollout_world(promotion_store: Store, promotion_keys: PromotionKeys, promotion_sim: ReleaseSimulator,
                  promotion_env: Path) -> RolloutWorld:
    package = promotion_sim.package("1.2.3")
    return RolloutWorld(promotion_store, promotion_keys, promotion_sim, promotion_env, package)


# --- channel promotion (request -> approve -> endpoint export) ---------------------------------------


REQUEST_FILE = "release-channel-promotion-request.json"


@dataclass
class ChannelWorld:
    """A signed package, pinned keys and a store, with one in-process call per channel step; every
    step takes its time explicitly (request at NOW+6min, approve +12min, export +18min by default)."""

    store: Store
    keys: PromotionKeys
    sim: ReleaseSimulator
    work: Path
    package: Path

    def request(self, package: Path | None = None, *, channel: str = "stable", ring: str = "enterprise",
                requester: str = "alice", key: Path | None = None, at: datetime | None = None,
                output: Path | None = None, **extra: Any) -> dict[str, Any]:
        from ringward.operations.promotion.channel_ops import request_channel_promotion

        return request_channel_promotion(
            self.store, package_dir=package or self.package, channel=channel, target_ring=ring, requester=requester,
            signing_key=key or self.keys.promotion_pem, trust_root=self.keys.trust_root, now=at or later(0.1),
            output=output, **extra)

    def approve(self, approval_id: str, *, actor: str = "bob", at: datetime | None = None) -> Any:
        from ringward.core.approvals.rules import Decision
        from ringward.operations.approvals.approval_ops import decide_approval

        return decide_approval(self.store, approval_id, decision=Decision.APPROVE, actor=actor, reason="CAB ok",
                               now=at or later(0.2))

    def export(self, request: dict[str, Any] | Path, package: Path | None = None, *, channel: str = "stable",
               provider: str = "all", actor: str = "carol", output: Path | None = None, at: datetime | None = None,
               **extra: Any) -> dict[str, Any]:
        from ringward.operations.promotion.endpoint_ops import export_endpoint

        path = request if isinstance(request, Path) else Path(request["output_dir"]) / REQUEST_FILE
        return export_endpoint(
            self.store, package_dir=package or self.package, channel=channel, provider=provider,
            promotion_request=path, trust_root=self.keys.trust_root, actor=actor,
            output=output or self.work / f"export-{len(list(self.work.iterdir()))}", now=at or later(0.3), **extra)

    def promote(self, package: Path | None = None, *, channel: str = "stable", at: datetime | None = None,
                **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """request -> approve (another person) -> export; ``at`` shifts all three."""
        base = at or later(0.1)
        requested = self.request(package, channel=channel, at=base,
                                 output=self.work / f"req-{len(list(self.work.iterdir()))}")
        self.approve(requested["approval_id"], at=base + timedelta(minutes=6))
        exported = self.export(requested, package, channel=channel, at=base + timedelta(minutes=12), **extra)
        return requested, exported

    def records(self, kind: str, **filters: Any) -> list[Any]:
        from ringward.core.evidence.query import EvidenceQuery

        return list(self.store.search_evidence(EvidenceQuery(kind=kind, limit=500, **filters)).items)


@pytest.fixture
def channel_world(promotion_store: Store, promotion_keys: PromotionKeys, promotion_sim: ReleaseSimulator,
                  promotion_env: Path) -> ChannelWorld:
    package = promotion_sim.package("1.2.3")
    return ChannelWorld(promotion_store, promotion_keys, promotion_sim, promotion_env, package)
