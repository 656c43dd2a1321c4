"""Pure rules: the §9.1 action table, the §9.2 decision-binding checks of a request file, providers."""

from __future__ import annotations

from typing import Any

import pytest

from ringward.core.errors import InputError, MalformedDocumentError
from ringward.core.remediation import request as rq
from ringward.core.remediation.handoff import HandoffProvider
from ringward.core.remediation.handoff_build import parse_providers


@pytest.mark.parametrize(("drift", "strategy", "expected"), [
    ("missing_observation", "rollback", "republish_endpoint_export"),
    ("unknown_deployment_target", "mixed", "review_unknown_endpoint_target"),
    ("stale_observation", "rollback", "refresh_endpoint_inventory"),
    ("version_drift,stale_observation", "rollback", "rollback_runtime"),
    ("binary_drift", "republish", "republish_endpoint_export"),
    ("version_drift,binary_drift", "mixed", "republish_or_rollback_runtime"),
    ("something_new", "mixed", "review_endpoint_drift"),
])
def test_action_table(drift: str, strategy: str, expected: str) -> None:
    assert rq.action_type_for(drift, rq.Strategy(strategy)) == expected


def _request() -> dict[str, Any]:
    actions: list[dict[str, Any]] = [{"action_id": "era_000000000001", "action_type": "rollback_runtime"}]
    request_id = rq.request_id_for("mer_0123456789ab", "rollback", actions)
    return {
        "schema_version": rq.REQUEST_SCHEMA, "request_id": request_id, "reconciliation_id": "mer_0123456789ab",
        "created_at": "2026-11-22T12:00:00Z", "expires_at": "2026-11-23T12:00:00Z", "requested_by": "alice",
        "strategy": "rollback", "drift_status": "drift_detected", "alert_level": "critical",
        "release": {"version": "1.2.3", "commit": "abc"}, "channel": "stable", "action_count": 1,
        "actions": actions,
        "decision": {"decision_id": f"{request_id}:decision", "session_id": "mer_0123456789ab",
                     "action_type": rq.ACTION, "metadata": {"request_id": request_id,
                                                           "reconciliation_id": "mer_0123456789ab"}},
        "approval": {"approval_id": "apr_1", "state": "pending", "approver_group": None,
                     "decision_id": f"{request_id}:decision"},
        "reconciliation_sha256": "0" * 64,
    }


def test_a_consistent_request_parses() -> None:
    assert rq.parse_request(_request(), source="r.json").strategy is rq.Strategy.ROLLBACK


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["decision"].update(decision_id="err_x:decision"), "decision.decision_id expected"),
    (lambda d: d["decision"].update(session_id="mer_ffffffffffff"), "decision.session_id expected"),
    (lambda d: d["decision"].update(action_type="release_promote_endpoint_rollout"), "decision.action_type"),
    (lambda d: d["decision"]["metadata"].update(request_id="err_ffffffffffff"), "decision.metadata.request_id"),
    (lambda d: d["decision"]["metadata"].update(reconciliation_id="mer_1"), "decision.metadata.reconciliation_id"),
    (lambda d: d["approval"].update(decision_id="x"), "approval.decision_id expected"),
    (lambda d: d.update(action_count=2), "action_count expected 1"),
    (lambda d: d.update(strategy="mixed"), "request_id expected"),
    (lambda d: d.update(schema_version="cavra.endpoint-drift-remediation-request.v2"), "schema_version expected"),
    (lambda d: d.pop("approval"), "approval"),
])
def test_request_binding_problems(change: Any, message: str) -> None:
    document = _request()
    change(document)
    with pytest.raises(MalformedDocumentError, match=message):
        rq.parse_request(document, source="r.json")


def test_subject_digest_ignores_only_the_approval_summary_and_signature() -> None:
    document = _request()
    digest = rq.subject_digest(document)
    assert rq.subject_digest({**document, "approval": {"approval_id": "other"}, "signature": {}}) == digest
    assert rq.subject_digest({**document, "channel": "beta"}) != digest


def test_providers() -> None:
    assert parse_providers("Jira, slack,jira") == (HandoffProvider.JIRA, HandoffProvider.SLACK)
    assert parse_providers(["webhook", "private-queue"]) == (HandoffProvider.WEBHOOK, HandoffProvider.PRIVATE_QUEUE)
    assert len(parse_providers("all")) == len(HandoffProvider)
    with pytest.raises(InputError, match="provider must be one of"):
        parse_providers("pagerduty")
    with pytest.raises(InputError, match="at least one"):
        parse_providers(" , ")
