"""API tokens: only SHA-256 digests are stored; the secret is shown once at creation."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError

from ringward.core.common.roles import Role
from ringward.core.errors import InputError, StateError, TokenNotFoundError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.tables import api_token_table as tok_t

TOKEN_PREFIX = "rwt_"  # noqa: S105 - a public marker, not a secret
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
#: secrets are 32 random bytes; a presented token longer than this is not ours
MAX_TOKEN_LENGTH = 128


class TokenInfo(BaseModel):
    """A token's public facts (never its secret or digest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


def _token_draft(event: str, info: TokenInfo, actor: str) -> EvidenceDraft:
    return EvidenceDraft(
        kind="api-token",
        actor=actor,
        subject=EvidenceSubject(status=event),
        payload={
            "schema_version": "ringward.api-token-event.v1",
            "event": event,
            "token_id": info.token_id,
            "name": info.name,
            "role": info.role.value,
            "expires_at": None if info.expires_at is None else info.expires_at.isoformat(),
        },
    )


class TokenRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store

    def create(
        self, *, name: str, role: Role, created_by: str, now: datetime, expires_at: datetime | None = None
    ) -> tuple[TokenInfo, str]:
        """Create a token; returns its facts and the secret (the only time it exists in clear)."""
        if not NAME_PATTERN.match(name):
            raise InputError(
                "--name: expected 1-128 characters of letters, digits and ._@+- "
                f"(starting alphanumeric), found {name!r}"
            )
        if expires_at is not None and expires_at <= now:
            raise InputError("--expires-in: the token would already be expired")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(
            token_id="tok_" + secrets.token_hex(6),
            name=name,
            role=role,
            created_at=now.astimezone(UTC),
            created_by=created_by,
            expires_at=expires_at,
        )
        try:
            with self._store.writing() as conn:
                conn.execute(
                    sa.insert(tok_t).values(
                        token_id=info.token_id,
                        name=name,
                        role=role.value,
                        token_sha256=token_digest(secret),
                        created_at=info.created_at,
                        created_by=created_by,
                        expires_at=expires_at,
                    )
                )
                append_locked(conn, [_token_draft("created", info, created_by)], now)
        except IntegrityError as exc:
            raise StateError(f"--name: a token named {name!r} already exists (names identify callers)") from exc
        return info, secret

    def authenticate(self, secret: str, *, now: datetime) -> TokenInfo | None:
        """The active token for ``secret``, or None. Read-only."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN_LENGTH:
            return None
        with self._store.reading() as conn:
            row = conn.execute(sa.select(tok_t).where(tok_t.c.token_sha256 == token_digest(secret))).first()
        if row is None:
            return None
        info = _info(row)
        return info if info.is_active(now) else None

    def list(self) -> list[TokenInfo]:
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(tok_t).order_by(tok_t.c.created_at.asc(), tok_t.c.name.asc())).all()
        return [_info(r) for r in rows]

    def revoke(self, name: str, *, actor: str, now: datetime) -> TokenInfo:
        with self._store.writing() as conn:
            row = conn.execute(sa.select(tok_t).where(tok_t.c.name == name)).first()
            if row is None:
                raise TokenNotFoundError(f"token {name!r} not found")
            if row.revoked_at is not None:
                raise StateError(f"token {name!r} was already revoked at {row.revoked_at.isoformat()}")
            conn.execute(
                sa.update(tok_t)
                .where(tok_t.c.name == name, tok_t.c.revoked_at.is_(None))
                .values(revoked_at=now.astimezone(UTC), revoked_by=actor)
            )
            info = _info(row).model_copy(update={"revoked_at": now.astimezone(UTC), "revoked_by": actor})
            append_locked(conn, [_token_draft("revoked", info, actor)], now)
        return info
