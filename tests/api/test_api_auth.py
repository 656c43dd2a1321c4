"""Authentication and roles on every route; tokens stored hashed; identity recorded on writes."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa

from ringward.api.app import iter_routes
from ringward.core.common.roles import Role
from ringward.store.core import READ_ONLY
from tests.api.conftest import T0, Api

DIGEST = "sha256:" + "b" * 64
SAMPLE = {"record_id": "1", "name": "report.json", "approval_id": "apr_000000000000"}


def _routes(api: Api) -> list[tuple[str, str]]:
    out = []
    for method, path in iter_routes(api.client.app):  # type: ignore[arg-type]
        if method == "HEAD":
            continue
        out.append((method, path.replace("{name:path}", "{name}").format(**SAMPLE)))
    return out


def test_every_route_but_healthz_needs_a_token(api: Api) -> None:
    routes = _routes(api)
    assert len(routes) >= 12 and ("GET", "/openapi.json") in routes
    for method, path in routes:
        if path == "/healthz":
            assert api.client.get(path).status_code == 200
            continue
        for headers in ({}, {"Authorization": "Bearer rwt_forged"}, {"Authorization": "Basic dXNlcjpwdw=="}):
            response = api.client.request(method, path, headers=headers, json={"reason": "x"})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"] == "unauthenticated"
            assert response.headers["www-authenticate"] == "Bearer"


def test_forged_tokens_are_refused(api: Api) -> None:
    real = api.tokens["admin"]
    for forged in (
        real[:-1] + ("A" if real[-1] != "A" else "B"),
        real + "x",
        "rwt_" + "A" * 43,
        real.upper(),
        "x" * 500,
    ):
        response = api.client.get("/evidence", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401, forged


def test_role_matrix(api: Api) -> None:
    body = {"action": "promote-ring", "subject_digest": DIGEST, "target": "pilot"}
    # reads: every role
    for role in Role:
        assert api.get("/evidence", role.value).status_code == 200
        assert api.get("/approvals", role.value).status_code == 200
    # requesting: operator and admin only
    assert api.post("/approvals", "viewer", body).status_code == 403
    assert api.post("/approvals", "approver", body).status_code == 403
    created = api.post("/approvals", "operator", body)
    assert created.status_code == 201
    approval_id = created.json()["approval_id"]
    # deciding: approver and admin only
    for role in ("viewer", "operator"):
        refused = api.post(f"/approvals/{approval_id}/approve", role, {"reason": "ok"})
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert api.post(f"/approvals/{approval_id}/revoke", role, {"reason": "x"}).status_code == 403
    assert api.post(f"/approvals/{approval_id}/approve", "approver", {"reason": "ok"}).status_code == 200
    assert api.get(f"/approvals/{approval_id}").json()["state"] == "approved"


def test_caller_identity_is_the_actor_of_every_write(api: Api) -> None:
    created = api.post(
        "/approvals", "operator", {"action": "promote-ring", "subject_digest": DIGEST, "target": "broad"}
    ).json()
    assert created["requester"] == "operator"
    decided = api.post(f"/approvals/{created['approval_id']}/deny", "approver2", {"reason": "not today"}).json()
    assert decided["decided_by"] == "approver2"
    records = api.get("/evidence", params={"approval_id": created["approval_id"]}).json()["items"]
    assert [r["actor"] for r in records] == ["approver2", "operator"]
    assert [r["kind"] for r in records] == ["approval-decision", "approval-request"]


def test_body_cannot_name_another_actor(api: Api) -> None:
    created = api.post(
        "/approvals",
        "operator",
        {"action": "promote-ring", "subject_digest": DIGEST, "target": "broad", "requester": "someone-else"},
    )
    assert created.status_code == 422 and "requester" in created.json()["message"]


def test_requester_cannot_approve_own_request_through_the_api(api: Api) -> None:
    created = api.post("/approvals", "admin", {"action": "a", "subject_digest": DIGEST, "target": "t"}).json()
    response = api.post(f"/approvals/{created['approval_id']}/approve", "admin", {"reason": "mine"})
    assert response.status_code == 409 and response.json()["error"] == "separation-of-duties"
    assert api.get(f"/approvals/{created['approval_id']}").json()["state"] == "pending"


def test_revoked_and_expired_tokens_stop_working(api: Api) -> None:
    api.store.tokens.revoke("viewer", actor="test", now=T0)
    assert api.get("/evidence", "viewer").status_code == 401
    _, short = api.store.tokens.create(
        name="temp", role=Role.VIEWER, created_by="test", now=T0, expires_at=T0 + timedelta(hours=1)
    )
    headers = {"Authorization": f"Bearer {short}"}
    assert api.client.get("/evidence", headers=headers).status_code == 200
    api.clock.advance(hours=1)
    assert api.client.get("/evidence", headers=headers).status_code == 401


def test_tokens_are_stored_hashed(api: Api) -> None:
    with api.store.reading() as conn:
        rows = conn.execute(sa.text("SELECT name, token_sha256 FROM api_token")).all()
        dump = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM api_token")).all() for v in row)
    stored = dict(rows)
    for name in ("viewer", "admin"):
        assert stored[name] == hashlib.sha256(api.tokens[name].encode()).hexdigest()
    for secret in api.tokens.values():
        assert secret not in dump


def test_get_routes_never_write(api: Api) -> None:
    created = api.post("/approvals", "operator", {"action": "a", "subject_digest": DIGEST, "target": "t"}).json()

    def snapshot() -> list[object]:
        with api.store.reading() as conn:
            return [
                conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).all()
                for table in (
                    "evidence_record",
                    "evidence_head",
                    "approval",
                    "approval_decision",
                    "api_token",
                    "kv_state",
                )
            ]

    before = snapshot()
    api.clock.advance(days=3)  # the approval is now past expiry: reading it must not persist that
    for path in (
        "/healthz",
        "/evidence",
        "/evidence/1",
        "/evidence/1/artifacts",
        "/approvals",
        f"/approvals/{created['approval_id']}",
        "/approvals?state=expired",
        "/openapi.json",
    ):
        assert api.get(path, "admin").status_code in (200, 404), path
    assert api.get(f"/approvals/{created['approval_id']}").json()["effective_state"] == "expired"
    assert snapshot() == before


def test_read_only_context_refuses_writes(api: Api) -> None:
    token = READ_ONLY.set(True)
    try:
        with pytest.raises(RuntimeError, match="read-only"), api.store.writing():
            pass
    finally:
        READ_ONLY.reset(token)
