"""API token administration (CLI only: no HTTP route creates or lists tokens)."""

from __future__ import annotations

from datetime import UTC, datetime

from ringward.core.approvals.rules import parse_duration
from ringward.core.common.roles import Role
from ringward.core.errors import InputError
from ringward.store import Store, TokenInfo

MAX_TOKEN_TTL_DAYS = 3650


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InputError(f"--role: expected one of {', '.join(r.value for r in Role)}, found {value!r}") from None


def create_token(
    store: Store,
    *,
    name: str,
    role: str,
    created_by: str,
    expires_in: str | None = None,
    now: datetime | None = None,
) -> tuple[TokenInfo, str]:
    """Create a token; the returned secret is shown once and stored only as its SHA-256."""
    from datetime import timedelta

    moment = now or _utcnow()
    expires_at = None
    if expires_in is not None:
        expires_at = moment + parse_duration(
            expires_in, option="--expires-in", maximum=timedelta(days=MAX_TOKEN_TTL_DAYS)
        )
    return store.tokens.create(
        name=name, role=parse_role(role), created_by=created_by, now=moment, expires_at=expires_at
    )


def list_tokens(store: Store) -> list[TokenInfo]:
    return store.tokens.list()


def revoke_token(store: Store, name: str, *, actor: str, now: datetime | None = None) -> TokenInfo:
    return store.tokens.revoke(name, actor=actor, now=now or _utcnow())
