"""Fixtures for the advisories domain: pinned release / promotion / advisory keys, a verified
fixed release (1.2.3, SBOM component pkg:golang/golang.org/x/sys@v0.38.0), its rollout promoted
through the promotion domain, audited and delivered to a loopback Splunk HEC, and helpers to
run the CLI in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_httpserver import HTTPServer

from connectors.auth import TOKENS
from ringward.cli.main import run
from ringward.core.trust.root import Role, TrustRoot
from ringward.store import Store
from tests.promotion.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    PromotionKeys,
    RolloutWorld,
    later,
    promotion_env,
    promotion_store,
)
from tests.release.simulator import NOW, ReleaseSimulator, trusted
from tests.store.dbfixtures import db_url, store  # noqa: F401

HEC_TOKEN = "hec-advisory-token-5c2a91"
CVSS_CRITICAL = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
CVSS_LOW = "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"
COMMIT = "c0ffee" + "0" * 34
SYS_PURL = "pkg:golang/golang.org/x/sys@v0.38.0"


@dataclass
class AdvisoryKeys(PromotionKeys):
    advisory: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.advisory_pem = self._pem("advisory.pem", self.advisory)

    def trust(self) -> TrustRoot:
        return TrustRoot(
            updated_at=NOW,
            keys=(trusted(self.release, "release-1"), trusted(self.promotion, "promotion-1", roles=(Role.PROMOTION,)),
                  trusted(self.advisory, "advisory-1", roles=(Role.ADVISORY,))),
            thresholds={Role.RELEASE: 1, Role.PROMOTION: 1, Role.ADVISORY: 1},
        )


@pytest.fixture
def advisory_keys(tmp_path: Path) -> AdvisoryKeys:
    return AdvisoryKeys(tmp_path / "keys")


@pytest.fixture
def advisory_sim(tmp_path: Path, advisory_keys: AdvisoryKeys) -> ReleaseSimulator:
    return ReleaseSimulator(tmp_path / "sim", key=advisory_keys.release)


@pytest.fixture(autouse=True)
def _hec_token(monkeypatch: pytest.MonkeyPatch) -> None:
    TOKENS.clear()
    monkeypatch.setenv("RW_ADVISORY_HEC", HEC_TOKEN)


def connectors_config(path: Path, server: HTTPServer) -> Path:
    path.write_text(yaml.safe_dump({
        "defaults": {"timeout_seconds": 2, "budget_seconds": 5, "max_attempts": 1, "backoff_base_seconds": 0},
        "providers": [{"name": "soc-splunk", "provider": "splunk", "url": server.url_for("/services/collector/event"),
                       "token": "env:RW_ADVISORY_HEC"}],
    }))
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``ringward argv... --json`` in-process: (exit code, parsed stdout or None, stderr)."""
    capsys.readouterr()
    try:
        run(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    try:
        parsed = json.loads(out.out) if out.out.strip() else None
    except json.JSONDecodeError:
        parsed = None
    return code, parsed, out.err


@dataclass
class AdvisoryWorld:
    store: Store
    keys: AdvisoryKeys
    sim: ReleaseSimulator
    work: Path
    package: Path
    rollout: RolloutWorld
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def trust_root(self) -> Path:
        return self.keys.trust_root

    def promote_and_deliver(self, server: HTTPServer) -> dict[str, Any]:
        """capture -> request -> approve -> execute -> verify -> audit --deliver (loopback HEC)."""
        from ringward.operations.promotion import rollout_ops

        server.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
        captured, requested, executed = self.rollout.promoted()
        verified = rollout_ops.verify_rollout(self.store, rollout_dir=Path(captured["output_dir"]),
                                              trust_root=self.trust_root, actor="auditor", now=later(0.35))
        config = connectors_config(self.work.parent / "connectors.yaml", server)
        audited = rollout_ops.audit(self.store, record_path=Path(executed["execution_path"]),
                                    output=self.work / "audit", actor="auditor", deliver_config=config,
                                    now=later(0.4))
        assert audited["delivery"]["success"] is True
        self.evidence = {"captured": captured, "requested": requested, "executed": executed, "verified": verified,
                         "audited": audited, "config": config}
        return self.evidence

    def create_args(self, output: Path, *, severity: str = "high", cvss: str = CVSS_CRITICAL,
                    full: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
        args = ["advisory", "create", "--id", "RW-2026-0001", "--severity", severity,
                "--summary", "Updater accepts an unsigned channel manifest", "--affected", ">=1.0.0|<1.2.3",
                "--fixed", "1.2.3", "--cwe", "CWE-347", "--cvss", cvss, "--cve", "CVE-2026-10001",
                "--reporter", "alice@example.org", "--package", str(self.package), "--trust-root",
                str(self.trust_root), "--output", str(output), "--at", later(0.5).isoformat(), "--json"]
        if full:
            ev = self.evidence
            args += ["--impact", "An attacker on the update path can serve an unsigned manifest.",
                     "--prerequisites", "Network position between endpoint and update server.",
                     "--mitigation", "Pin the channel manifest digest in the updater policy.",
                     "--fix-commit", COMMIT[:12], "--pull-request", "https://github.com/acme/runtime/pull/42",
                     "--asset", "https://github.com/acme/runtime/releases/download/v1.2.3/rt-1.2.3.zip",
                     "--rollout", ev["captured"]["output_dir"], "--execution", ev["executed"]["execution_path"],
                     "--delivery", str(ev["audited"]["delivery"]["evidence_id"]),
                     "--evidence", f"rollout-verification={ev['verified']['evidence']['evidence_id']}",
                     "--evidence", f"audit-export={ev['audited']['evidence']['evidence_id']}",
                     "--acknowledged", "2026-11-01", "--triaged", "2026-11-02"]
        return args + list(extra)


@pytest.fixture
def advisory_world(promotion_store: Store, advisory_keys: AdvisoryKeys, advisory_sim: ReleaseSimulator,  # noqa: F811
                   promotion_env: Path) -> Iterator[AdvisoryWorld]:  # noqa: F811
    package = advisory_sim.package("1.2.3")
    rollout = RolloutWorld(promotion_store, advisory_keys, advisory_sim, promotion_env, package)
    yield AdvisoryWorld(promotion_store, advisory_keys, advisory_sim, promotion_env, package, rollout)


def kev_catalog(version: str = "2026.11.20", released: datetime | None = None,
                entries: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    when = released or (NOW - timedelta(days=2))
    vulns = entries if entries is not None else [kev_entry("CVE-2026-20001", vendor="Golang", product="x/sys")]
    doc = {"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": version,
           "dateReleased": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "count": len(vulns), "vulnerabilities": vulns}
    doc.update(overrides)
    return doc


def kev_entry(cve: str, *, vendor: str = "Acme", product: str = "Widget") -> dict[str, Any]:
    return {"cveID": cve, "vendorProject": vendor, "product": product, "vulnerabilityName": f"{product} bug",
            "dateAdded": "2026-11-18", "shortDescription": "Memory corruption.", "requiredAction": "Apply updates.",
            "dueDate": "2026-12-09", "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": ["CWE-787"]}
