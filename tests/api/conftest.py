from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ringward.api.app import create_app
from ringward.core.common.roles import Role
from ringward.core.evidence.records import EvidenceArtifact, EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.store import Store
from tests.store.dbfixtures import db_url, store  # noqa: F401

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now = self.now + timedelta(**delta)


@dataclass
class Api:
    client: TestClient
    store: Store
    root: Path
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, path: str, who: str = "viewer", **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.get(path, headers=self.headers(who), **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, who: str, json: object | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.post(path, headers=self.headers(who), json=json, **kwargs)  # type: ignore[arg-type]


def write_bundle(root: Path, relative: str, files: dict[str, bytes]) -> tuple[EvidenceArtifact, ...]:
    """A bundle the way the lead's evidence_bundle writes it: files + sorted checksums.txt."""
    directory = root / relative
    directory.mkdir(parents=True)
    artifacts = []
    for name in sorted(files):
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[name])
        artifacts.append(
            EvidenceArtifact(name=name, sha256=hashlib.sha256(files[name]).hexdigest(), size_bytes=len(files[name]))
        )
    (directory / "checksums.txt").write_text("".join(f"{a.sha256}  {a.name}\n" for a in artifacts))
    return tuple(artifacts)


def add_bundle_record(target: Store, root: Path, relative: str, files: dict[str, bytes]) -> EvidenceRecord:
    artifacts = write_bundle(root, relative, files)
    return target.append(
        EvidenceDraft(
            kind="managed-endpoint-rollout",
            actor="release-bot",
            subject=EvidenceSubject(status="staged", deployment_target="linux-fleet", ring="pilot"),
            payload={"rollout_id": relative},
            bundle_dir=relative,
            artifacts=artifacts,
        )
    )


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Iterator[Api]:  # noqa: F811
    root = tmp_path / "artifact-root"
    root.mkdir()
    clock = Clock()
    harness = Api(
        client=TestClient(create_app(store=store, artifact_root=root, clock=clock)), store=store, root=root, clock=clock
    )
    for role in Role:
        _, secret = store.tokens.create(name=role.value, role=role, created_by="test", now=T0 - timedelta(days=1))
        harness.tokens[role.value] = secret
    _, harness.tokens["operator2"] = store.tokens.create(
        name="operator2", role=Role.OPERATOR, created_by="test", now=T0 - timedelta(days=1)
    )
    _, harness.tokens["approver2"] = store.tokens.create(
        name="approver2", role=Role.APPROVER, created_by="test", now=T0 - timedelta(days=1)
    )
    with harness.client:
        yield harness


# --- promotion routes: the server configuration every API test runs with -----------------------------

WINDOWS_POLICY = """
schema_version: ringward.promotion-windows.v1
default: allow
allow:
  - name: prod-weekdays
    targets: [ring:production]
    timezone: America/New_York
    start: "2026-01-05T09:00"
    duration: 8h
    rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
freezes:
  - name: year-end
    targets: ["*"]
    reason: Year-end change freeze
    start_at: "2026-12-18T17:00:00-05:00"
    end_at: "2027-01-04T09:00:00-05:00"
    timezone: America/New_York
"""


@pytest.fixture(autouse=True)
def promotion_server_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A server with a promotion root (an empty scratch directory: request paths are confined to
    it) and a promotion window policy; no trust root or promotion key (tests that promote set
    them); Prefect events off. Returns the promotion root."""
    root = tmp_path / "promotion-root"
    root.mkdir()
    policy = tmp_path / "windows.yaml"
    policy.write_text(WINDOWS_POLICY)
    monkeypatch.setenv("RINGWARD_PROMOTION_ROOT", str(root))
    monkeypatch.setenv("RINGWARD_WINDOWS", str(policy))
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    for name in ("RINGWARD_TRUST_ROOT", "RINGWARD_PROMOTION_SIGNING_KEY", "CAVRA_ROLLOUT_PROMOTION_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    return root
