"""API roles and what each may do.

Roles are ordered by trust, but permissions are listed explicitly (no "higher role implies
lower" arithmetic) so a reader can see at a glance that, for example, an operator can request
approvals but never decide them.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


class Permission(StrEnum):
    READ_EVIDENCE = "evidence:read"
    DOWNLOAD_ARTIFACTS = "evidence:download"
    READ_APPROVALS = "approvals:read"
    REQUEST_APPROVAL = "approvals:request"
    DECIDE_APPROVAL = "approvals:decide"
    REVOKE_APPROVAL = "approvals:revoke"
    #: rollouts, channels, promotion window checks (drill-down, status, high-water marks, holds)
    READ_PROMOTIONS = "promotions:read"
    #: channel promotion requests, rollout promotion requests and rollback requests
    REQUEST_PROMOTION = "promotions:request"
    #: endpoint exports (a channel promotion's execution), rollout executions and rollbacks
    EXECUTE_PROMOTION = "promotions:execute"
    #: hold and unhold a release channel
    HOLD_CHANNEL = "channels:hold"


_READ = {
    Permission.READ_EVIDENCE,
    Permission.DOWNLOAD_ARTIFACTS,
    Permission.READ_APPROVALS,
    Permission.READ_PROMOTIONS,
}

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_READ),
    # operators request and execute; they never decide (an approver does, on the approval routes)
    Role.OPERATOR: frozenset(
        _READ
        | {
            Permission.REQUEST_APPROVAL,
            Permission.REQUEST_PROMOTION,
            Permission.EXECUTE_PROMOTION,
            Permission.HOLD_CHANNEL,
        }
    ),
    Role.APPROVER: frozenset(_READ | {Permission.DECIDE_APPROVAL, Permission.REVOKE_APPROVAL}),
    Role.ADMIN: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def roles_with(permission: Permission) -> list[Role]:
    return [role for role in Role if permission in PERMISSIONS[role]]
