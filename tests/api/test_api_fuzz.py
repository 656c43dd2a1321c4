"""Fuzz the API with schemathesis against its own OpenAPI schema: zero server errors, responses
that match the schema, with and without a valid token, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from ringward.api.app import create_app
from ringward.core.approvals.rules import ApprovalRequest
from ringward.core.common.roles import Role
from ringward.store import Store
from tests.api.conftest import add_bundle_record

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
FUZZ: dict[str, Any] = {}


@pytest.fixture
def fuzz_schema(store: Store, tmp_path: Path) -> Iterator[Any]:
    root = tmp_path / "root"
    root.mkdir()
    add_bundle_record(store, root, "rollouts/fuzz", {"a.json": b"{}\n", "b/c.txt": b"text\n"})
    store.approvals.create(
        ApprovalRequest(action="promote-ring", subject_digest="sha256:" + "d" * 64, target="pilot", requester="req"),
        expires_at=NOW + timedelta(days=1),
        now=NOW,
    )
    _, FUZZ["admin"] = store.tokens.create(name="fuzz-admin", role=Role.ADMIN, created_by="t", now=NOW)
    app = create_app(store=store, artifact_root=root, clock=lambda: NOW)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {FUZZ['admin']}"})


def _run(strategy: Any, examples: int, check: Any) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        check(case)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_fails_with_a_server_error(fuzz_schema: Any, mode: GenerationMode) -> None:
    """Positive data: every schemathesis check (status codes, response schemas, acceptance).
    Negative data: no server error (accepting e.g. ``success=[true]`` serialised as
    ``success=true`` is not a defect)."""
    headers = {"Authorization": f"Bearer {FUZZ['admin']}"}
    checks = None if mode is GenerationMode.POSITIVE else [not_a_server_error]
    examples = int(os.environ.get("RINGWARD_FUZZ_EXAMPLES", "250"))
    _run(
        fuzz_schema.as_strategy(generation_mode=mode),
        examples,
        lambda case: case.call_and_validate(headers=headers, checks=checks),
    )


def test_api_without_a_token_refuses_everything_but_health(fuzz_schema: Any) -> None:
    def check(case: Any) -> None:
        response = case.call()
        assert response.status_code < 500
        if case.path != "/healthz":
            assert response.status_code in (401, 404, 405, 422), (case.method, case.path, response.status_code)

    _run(fuzz_schema.as_strategy(), 60, check)
