"""The world the playbook tests share (fixtures and helpers; its one test checks the world itself): real
Ed25519 keys pinned in a *chained* trust root (two root keys, root threshold 2), signed packages built by
the release simulator, channel promotions through the promotion domain (request -> approval by another
person -> export), fleet inventory ingested and reconciled by the inventory domain, a signed
remediation request, a loopback Splunk HEC for notifications, a SQLite store, and the CLI in-process.

Times come from the release simulator's NOW: every operation takes its time explicitly."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.auth import TOKENS
from ringward.cli.main import run as cli_main
from ringward.core.approvals.rules import Decision
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.trust.keys import private_key_pem
from ringward.core.trust.root import Role, TrustRoot
from ringward.core.trust.rotation import sign_root
from ringward.operations.trust.keys import save_trust_root
from ringward.store import Store, open_store
from tests.release.simulator import NOW, ReleaseSimulator, trusted

HEC_TOKEN = "hec-playbook-token-7d1e42"
PLAYBOOK_STEP = "playbook-step"


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Keys:
    """PEM files of every key the world uses, and the trust root pinning them (v1, signed by both root keys)."""

    root: Path
    ops: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    release: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    promotion: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    remediation: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    root_a: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    root_b: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    chained: bool = True

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ("ops", "release", "promotion", "remediation", "root_a", "root_b"):
            path = self.root / f"{name}.pem"
            path.write_bytes(private_key_pem(getattr(self, name)))
            path.chmod(0o600)
            setattr(self, f"{name}_pem", path)
        self.trust_root = self.root / "trust-root.json"
        save_trust_root(self.trust_root, self.trust(), overwrite=True)

    def trust(self) -> TrustRoot:
        keys = [trusted(self.ops, "ops-1", roles=(Role.RELEASE, Role.PROMOTION, Role.REMEDIATION)),
                trusted(self.release, "release-2"), trusted(self.promotion, "promotion-2", roles=(Role.PROMOTION,)),
                trusted(self.remediation, "remediation-2", roles=(Role.REMEDIATION,))]
        thresholds = {Role.RELEASE: 1, Role.PROMOTION: 1, Role.REMEDIATION: 1}
        if self.chained:
            keys += [trusted(self.root_a, "root-a", roles=(Role.ROOT,)),
                     trusted(self.root_b, "root-b", roles=(Role.ROOT,))]
            thresholds[Role.ROOT] = 2
        root = TrustRoot(updated_at=NOW - timedelta(days=1), keys=tuple(keys), thresholds=thresholds)
        if self.chained:
            root = sign_root(sign_root(root, self.root_a, signer="holder-a"), self.root_b, signer="holder-b")
        return root


@dataclass
class World:
    store: Store
    keys: Keys
    sim: ReleaseSimulator
    work: Path
    home: Path
    counter: list[int] = field(default_factory=lambda: [0])

    def out(self, prefix: str) -> Path:
        self.counter[0] += 1
        return self.work / f"{prefix}-{self.counter[0]}"

    # --- releases ----------------------------------------------------------------------------------------

    def package(self, version: str, **info: Any) -> Path:
        return self.sim.package(version, out=f"out-{version}-{len(info)}", **info)

    def verify(self, package: Path, *, now: datetime | None = None) -> dict[str, Any]:
        from ringward.operations.release.release_ops import run_verify_package

        return run_verify_package(package_dir=str(package), trust_root=str(self.keys.trust_root),
                                  now=now or at(0.05), actor="ci")

    def promote(self, package: Path, *, channel: str = "stable", ring: str = "enterprise", hours: float = 0.1,
                key: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """request (alice) -> approve (bob) -> export (carol)."""
        requested = self.request(package, channel=channel, ring=ring, hours=hours, key=key)
        self.approve(requested["approval_id"], hours=hours + 0.05)
        return requested, self.export(requested, package, channel=channel, hours=hours + 0.1)

    def request(self, package: Path, *, channel: str = "stable", ring: str = "enterprise", hours: float = 0.1,
                key: Path | None = None) -> dict[str, Any]:
        from ringward.operations.promotion.channel_ops import request_channel_promotion

        return request_channel_promotion(self.store, package_dir=package, channel=channel, target_ring=ring,
                                         requester="alice", signing_key=key or self.keys.ops_pem,
                                         trust_root=self.keys.trust_root, now=at(hours), output=self.out("request"))

    def export(self, requested: dict[str, Any], package: Path, *, channel: str = "stable",
               hours: float = 0.2) -> dict[str, Any]:
        from ringward.operations.promotion.endpoint_ops import export_endpoint

        request = Path(requested["output_dir"]) / "release-channel-promotion-request.json"
        return export_endpoint(self.store, package_dir=package, channel=channel, provider="all",
                               promotion_request=request,
                               trust_root=self.keys.trust_root, actor="carol", output=self.out("export"), now=at(hours))

    def approve(self, approval_id: str, *, actor: str = "bob", hours: float = 0.15) -> Any:
        from ringward.operations.approvals.approval_ops import decide_approval

        return decide_approval(self.store, approval_id, decision=Decision.APPROVE, actor=actor, reason="IR lead ok",
                               now=at(hours))

    # --- fleet -------------------------------------------------------------------------------------------

    def targets(self, package: Path) -> dict[str, str]:
        manifest = json.loads((package / "rt.endpoint-deployment.json").read_text())
        return {t["id"]: t["binary_sha256"] for t in manifest["deployment_targets"]}

    def fleet(self, package: Path, version: str, *, prefix: str = "host", seen: float = 0.5) -> list[dict[str, Any]]:
        return [{"endpoint_id": f"{prefix}-{i}", "deployment_target": target, "installed_version": version,
                 "binary_sha256": sha, "last_seen_at": iso(at(seen))}
                for i, (target, sha) in enumerate(self.targets(package).items())]

    def ingest(self, endpoints: list[dict[str, Any]], *, channel: str | None = "stable",
               hours: float = 0.6) -> dict[str, Any]:
        from ringward.operations.inventory.ingest import ingest_inventory

        source = self.out("inventory-source").with_suffix(".json")
        source.write_text(json.dumps({"endpoints": endpoints}))
        return ingest_inventory(self.store, source=source, provider="linux", now=at(hours), actor="inventory-bot",
                                channel=channel, software=("rt",), output=self.out("observations"))

    def remediation_request(self, package: Path, endpoints: list[dict[str, Any]], *, hours: float = 0.8,
                            key: Path | None = None) -> dict[str, Any]:
        from ringward.operations.inventory.reconcile import reconcile_inventory
        from ringward.operations.remediation.remediation_ops import request_remediation

        ingested = self.ingest(endpoints, hours=hours - 0.1)
        report = reconcile_inventory(self.store, package_dir=package, observations=Path(ingested["observations"]),
                                     trust_root=self.keys.trust_root, now=at(hours - 0.05), actor="inventory-bot",
                                     output=self.out("reconciliation"))
        return request_remediation(self.store, reconciliation=Path(report["report"]), strategy="mixed",
                                   requester="alice", signing_key=key or self.keys.ops_pem,
                                   trust_root=self.keys.trust_root, now=at(hours), output=self.out("remediation"))

    # --- reading the store -------------------------------------------------------------------------------

    def records(self, kind: str | None = None, **filters: Any) -> list[Any]:
        return list(self.store.search_evidence(EvidenceQuery(kind=kind, order="oldest", limit=500, **filters)).items)

    def count(self) -> int:
        return self.store.count_evidence()

    def channel(self, name: str = "stable") -> Any:
        from ringward.operations.promotion.channel_ops import channels

        return channels(self.store).get(name)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'ringward.db'}"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(home / "evidence"))
    monkeypatch.setenv("RINGWARD_ACTOR", "secops")
    monkeypatch.setenv("RW_PLAYBOOK_HEC", HEC_TOKEN)
    for name in ("RINGWARD_SIGNING_KEY", "RINGWARD_TRUST_ROOT", "RINGWARD_CONNECTORS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    # the loopback HEC's request log would reach a console handler the Prefect harness bound to an
    # earlier test's (closed) captured stderr
    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)
    TOKENS.clear()
    keys = Keys(tmp_path / "keys")
    sim = ReleaseSimulator(tmp_path / "sim", key=keys.ops)
    opened = open_store(url)
    try:
        yield World(opened, keys, sim, work, home)
    finally:
        opened.close()
        TOKENS.clear()


def connectors_config(path: Path, url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "defaults": {"timeout_seconds": 2, "budget_seconds": 5, "max_attempts": 1, "backoff_base_seconds": 0},
        "providers": [{"name": "soc-splunk", "provider": "splunk", "url": url, "token": "env:RW_PLAYBOOK_HEC"}],
    }))
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """``ringward ARGV`` in-process: (exit code, parsed JSON stdout or the text, stderr); never a traceback."""
    capsys.readouterr()
    try:
        cli_main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    try:
        parsed: Any = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        parsed = out
    return code, parsed, err


def step(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["run"]["steps"] if s["name"] == name)


def test_world_trust_root_is_chained_and_signed(world: World) -> None:
    from ringward.core.trust.rotation import is_chained, root_signers
    from ringward.operations.trust.keys import load_trust_root

    root = load_trust_root(world.keys.trust_root)
    assert is_chained(root) and root.version == 1
    assert len(root_signers(root, root, now=NOW).signed_by) == 2
