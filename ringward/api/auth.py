"""Bearer-token authentication and role checks (rule API1 of :mod:`ringward.api.app`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict

from ringward.core.common.roles import Permission, Role, allows
from ringward.store import Store

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="A token from `ringward api token create --name N --role R` "
    "(roles: viewer, operator, approver, admin).",
)


class ApiError(Exception):
    """An HTTP refusal rendered as ``{"error", "message"}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class Principal(BaseModel):
    """The authenticated caller: the token's name is the actor recorded on writes."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    token_id: str


Dependency = Callable[[HTTPAuthorizationCredentials | None], Coroutine[Any, Any, Principal]]


def authenticator(get_store: Callable[[], Store], clock: Callable[[], datetime]) -> Callable[[Permission], Dependency]:
    """``auth(permission)`` -> a FastAPI dependency returning the caller or refusing 401/403."""

    def require(permission: Permission) -> Dependency:
        async def dependency(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        ) -> Principal:
            # On the event loop, not in the thread pool: the lookup is one read of a unique index
            # (well under a millisecond), and handing each request to a worker thread and back
            # cost about as much CPU as a whole evidence page (docs/benchmarks.md, API concurrency).
            challenge = {"WWW-Authenticate": "Bearer"}
            if credentials is None or not credentials.credentials:
                raise ApiError(
                    401, "unauthenticated", "missing bearer token (Authorization: Bearer <token>)", challenge
                )
            info = get_store().tokens.authenticate(credentials.credentials, now=clock())
            if info is None:
                raise ApiError(401, "unauthenticated", "invalid, expired or revoked token", challenge)
            if not allows(info.role, permission):
                raise ApiError(403, "forbidden", f"role {info.role.value} does not allow {permission.value}")
            return Principal(name=info.name, role=info.role, token_id=info.token_id)

        return dependency

    return require
