"""Approval routes, and bad input on write routes: always a one-line 4xx, never a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

DIGEST = "sha256:" + "c" * 64
REQUEST = {"action": "promote-ring", "subject_digest": DIGEST, "target": "enterprise", "expires_in_seconds": 7200}


def _request(api: Api, **extra: object) -> str:
    response = api.post("/approvals", "operator", {**REQUEST, **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["approval_id"])


def test_request_approve_with_quorum_then_show(api: Api) -> None:
    approval_id = _request(api, quorum=2, note="needs two")
    first = api.post(f"/approvals/{approval_id}/approve", "approver", {"reason": "looks good"})
    assert first.status_code == 200 and first.json()["state"] == "pending" and first.json()["approvals"] == 1
    again = api.post(f"/approvals/{approval_id}/approve", "approver", {"reason": "again"})
    assert again.status_code == 409 and again.json()["error"] == "separation-of-duties"
    second = api.post(f"/approvals/{approval_id}/approve", "approver2", {"reason": "agreed"})
    assert second.json()["state"] == "approved" and second.json()["decided_by"] == "approver, approver2"
    shown = api.get(f"/approvals/{approval_id}").json()
    assert [v["actor"] for v in shown["votes"]] == ["approver", "approver2"]
    listed = api.get("/approvals", params={"state": "approved"}).json()
    assert [a["approval_id"] for a in listed["items"]] == [approval_id] and listed["total"] == 1


def test_deny_then_approve_is_refused(api: Api) -> None:
    approval_id = _request(api)
    assert api.post(f"/approvals/{approval_id}/deny", "approver", {"reason": "no"}).json()["state"] == "denied"
    late = api.post(f"/approvals/{approval_id}/approve", "approver2", {"reason": "yes"})
    assert late.status_code == 409 and late.json()["error"] == "approval-state"


def test_expired_approval_cannot_be_approved(api: Api) -> None:
    approval_id = _request(api)
    api.clock.advance(hours=2)
    response = api.post(f"/approvals/{approval_id}/approve", "approver", {"reason": "too late"})
    assert response.status_code == 409 and response.json()["error"] == "approval-expired"
    assert api.get(f"/approvals/{approval_id}").json()["state"] == "expired"  # the expiry was recorded


def test_revoke(api: Api) -> None:
    approval_id = _request(api)
    api.post(f"/approvals/{approval_id}/approve", "approver", {"reason": "ok"})
    revoked = api.post(f"/approvals/{approval_id}/revoke", "approver2", {"reason": "change freeze"})
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"


def test_unknown_approval_is_404(api: Api) -> None:
    assert api.get("/approvals/apr_ffffffffffff").status_code == 404
    response = api.post("/approvals/apr_ffffffffffff/approve", "approver", {"reason": "x"})
    assert response.status_code == 404 and response.json()["error"] == "approval-not-found"


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b'{"reason": "x"', {"content-type": "application/json"}, 400, "invalid JSON"),
        (b'{"reason": "x", "reason": "y"}', {"content-type": "application/json"}, 400, "duplicate key"),
        (b'{"reason": NaN}', {"content-type": "application/json"}, 400, "non-finite"),
        (b'\xef\xbb\xbf{"reason": "x"}', {"content-type": "application/json"}, 400, "BOM"),
        (b'{"reason": "x"} []', {"content-type": "application/json"}, 400, "invalid JSON"),
        (b'["reason"]', {"content-type": "application/json"}, 422, "body"),
        (b'{"reason": "x", "actor": "mallory"}', {"content-type": "application/json"}, 422, "actor"),
        (b'{"reason": ""}', {"content-type": "application/json"}, 422, "reason"),
        (b"{}", {"content-type": "application/json"}, 422, "reason"),
        (b"", {"content-type": "application/json"}, 422, "body"),
        (b"reason=x", {"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        (b'{"reason": "x"}', {"content-type": "text/plain"}, 415, "application/json"),
        (b'{"reason": "' + b"x" * 70_000 + b'"}', {"content-type": "application/json"}, 413, "at most"),
        (b'{"reason": "\xff"}', {"content-type": "application/json"}, 400, "UTF-8"),
    ],
)
def test_bad_decision_bodies(api: Api, body: bytes, headers: dict[str, str], status: int, needle: str) -> None:
    approval_id = _request(api)
    response = api.client.post(
        f"/approvals/{approval_id}/approve", content=body, headers={**api.headers("approver"), **headers}
    )
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "message"} and needle in response.json()["message"]
    assert "\n" not in response.json()["message"]
    assert api.get(f"/approvals/{approval_id}").json()["state"] == "pending"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject_digest": "sha256:ABC"}, "subject_digest"),
        ({"subject_digest": "sha1:" + "a" * 40}, "subject_digest"),
        ({"action": "bad action"}, "action"),
        ({"target": ""}, "target"),
        ({"target": "a\nb"}, "target"),
        ({"quorum": 0}, "quorum"),
        ({"quorum": 10}, "quorum"),
        ({"expires_in_seconds": 0}, "expires_in_seconds"),
        ({"expires_in_seconds": 100 * 86400}, "expires_in_seconds"),
        ({"expires_in_seconds": "2h"}, "expires_in_seconds"),
        ({"target": "   "}, "target"),
        ({"note": "a\x00b"}, "note"),
        ({"unknown": True}, "unknown"),
    ],
)
def test_bad_approval_requests(api: Api, change: dict[str, object], field: str) -> None:
    response = api.post("/approvals", "operator", {**REQUEST, **change})
    assert response.status_code in (400, 422), response.text
    assert field in response.json()["message"]
    assert api.get("/approvals").json()["total"] == 0


def test_a_get_route_that_tried_to_write_would_fail(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def writing_head() -> object:
        with api.store.writing():
            return None

    monkeypatch.setattr(api.store, "head", writing_head)
    with pytest.raises(RuntimeError, match="read-only"):
        api.client.get("/healthz")
