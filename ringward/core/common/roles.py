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


_READ = {Permission.READ_EVIDENCE, Permission.DOWNLOAD_ARTIFACTS, Permission.READ_APPROVALS}

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_READ),
    Role.OPERATOR: frozenset(_READ | {Permission.REQUEST_APPROVAL}),
    Role.APPROVER: frozenset(_READ | {Permission.DECIDE_APPROVAL, Permission.REVOKE_APPROVAL}),
    Role.ADMIN: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def roles_with(permission: Permission) -> list[Role]:
    return [role for role in Role if permission in PERMISSIONS[role]]
