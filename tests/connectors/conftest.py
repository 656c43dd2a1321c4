"""Fixtures for connector tests: the loopback fault server, a fake clock, stores, secrets, configs."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.auth import TOKENS
from ringward.core.delivery.config import ConnectorConfig, validate_connector_config
from ringward.core.delivery.event import ConnectorEvent, EventLink, Severity
from ringward.operations.delivery.delivery_ops import DeliveryHooks
from ringward.store import Store, open_store
from tests.connectors.fault_server import FaultServer
from tests.store.dbfixtures import db_url  # noqa: F401

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)

#: distinctive secret values; every test that stores evidence scans for them
SECRETS: dict[str, str] = {
    "RW_SPLUNK_TOKEN": "splunk-hec-3f9a7c1e-5b2d-4e8f-9a0b-1c2d3e4f5a6b",
    "RW_DD_API_KEY": "ddkey0a1b2c3d4e5f60718293a4b5c6d7e8f",
    "RW_SENTINEL_SECRET": "entra~client~secret~Zq8Kp2Lm4Nx6Vb",
    "RW_SENTINEL_TOKEN": "eyJ0eXAiOiJKV1Qi.sentinel-bearer-token.sig123",
    "RW_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "RW_SLACK_URL_PATH": "/services/T0SECRET1/B0SECRET2/xoxbSlackPathSecret9876",
    "RW_TEAMS_SIG": "teamsSigSecretQ1w2E3r4T5y6U7i8O9p0",
    "RW_JIRA_TOKEN": "ATATT3xFfGF0jiraApiTokenValue12345",
    "RW_SN_PASSWORD": "servicenow-pa55word-!x7",
    "RW_PD_ROUTING": "R0UT1NGKEYpagerduty0123456789ab",
    "RW_JAMF_SECRET": "jamf-client-secret-aaa111bbb222",
    "RW_INTUNE_SECRET": "intune-client-secret-ccc333ddd444",
    "RW_LINUX_TOKEN": "linux-fleet-bearer-eee555fff666",
    "RW_QUEUE_TOKEN": "queue-bearer-ggg777hhh888",
    "RW_CUSTOM_HEADER": "custom-header-secret-iii999",
}


class FakeClock:
    """A clock that only moves when the engine sleeps (or a test advances it)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hooks(clock: FakeClock) -> DeliveryHooks:
    return DeliveryHooks(clock=clock, sleep=clock.sleep, rng=random.Random(7), flush_interval=0.01)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'db' / 'ringward.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKENS.clear()
    yield
    TOKENS.clear()


def make_event(event_id: str = "evt-promotion-0001", **overrides: Any) -> ConnectorEvent:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "ringward.promotion.executed",
        "created_at": T0,
        "severity": Severity.WARNING,
        "title": "cavra-runtime 1.4.2 promoted to ring broad",
        "summary": "Promotion of 1.4.2 from pilot to broad was executed after approval apr_7f3c.",
        "release_version": "1.4.2",
        "channel": "stable",
        "ring": "broad",
        "environment": "production",
        "actor": "release-manager@example.com",
        "attributes": {"approval_id": "apr_7f3c", "endpoints": 1240},
        "links": (EventLink(title="Evidence", url="https://ringward.example.com/evidence/42"),),
    }
    fields.update(overrides)
    return ConnectorEvent(**fields)


def config_of(*providers: dict[str, Any], **defaults: Any) -> ConnectorConfig:
    base = {"backoff_base_seconds": 0.5, "timeout_seconds": 2.0, "budget_seconds": 60.0}
    base.update(defaults)
    return validate_connector_config({"defaults": base, "providers": list(providers)}, source="test.yaml")


def write_config(path: Path, *providers: dict[str, Any], **defaults: Any) -> Path:
    base = {"backoff_base_seconds": 0.01, "timeout_seconds": 2.0}
    base.update(defaults)
    path.write_text(yaml.safe_dump({"defaults": base, "providers": list(providers)}, sort_keys=False))
    return path


def scan_for_secrets(store: Store, secrets: dict[str, str]) -> list[str]:
    """Every (record id, secret name) where a secret value (or a part of a secret URL) appears in
    any stored evidence record or delivery-log row."""
    import sqlalchemy as sa

    leaks: list[str] = []
    needles = dict(secrets)
    for name, value in secrets.items():
        if value.startswith("/"):
            needles[name + ":last"] = value.rsplit("/", 1)[-1]
    with store.engine.connect() as conn:
        for table in (
            "evidence_record",
            "connector_delivery",
            "connector_event",
        ):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                text = " ".join(str(v) for v in row)
                for name, value in needles.items():
                    if value in text:
                        leaks.append(f"{table}: {name}")
    return leaks
