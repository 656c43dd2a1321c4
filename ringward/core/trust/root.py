"""The pinned trust root: which keys may sign what, and how many must agree.

Trust is never learnt from the thing being verified. The trust root file
(``ringward.trust-root.v1``) is placed by an operator and passed to every verifier; keys
embedded in signatures are only hints used to pick a pinned key.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import ConfigError, InputError, KeyMaterialError
from ringward.core.trust.keys import PublicKey, load_public_key_pem

TRUST_ROOT_SCHEMA: Final = "ringward.trust-root.v1"
MAX_TRUST_ROOT_BYTES = 1024 * 1024

DEFAULT_TRUSTED_BUILDERS = (
    "https://github.com/actions/runner/github-hosted",
    "https://ringward.dev/builders/local/v1",
)


class Role(StrEnum):
    RELEASE = "release"
    PROMOTION = "promotion"
    REMEDIATION = "remediation"
    ADVISORY = "advisory"
    #: signs new versions of the trust root itself (TUF-style root rotation, core/trust/rotation.py)
    ROOT = "root"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = Field(min_length=1, max_length=128)
    roles: tuple[Role, ...] = Field(min_length=1)
    status: KeyStatus = KeyStatus.ACTIVE
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key_pem: str
    public_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    status_changed_at: datetime | None = None
    status_reason: str | None = None

    @field_validator("valid_from", "valid_until", "status_changed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must include a UTC offset")
        return value

    def public_key(self) -> PublicKey:
        try:
            pem = self.public_key_pem.encode("ascii")
        except UnicodeEncodeError as exc:
            raise KeyMaterialError(f"trust root key {self.label!r}: public_key_pem is not ASCII PEM text") from exc
        key = load_public_key_pem(pem, source=f"trust root key {self.label!r}")
        if key.key_id != self.key_id:
            raise KeyMaterialError(
                f"trust root key {self.label!r}: key_id {self.key_id} does not match its public key "
                f"(computed {key.key_id})"
            )
        if key.pem_sha256 != self.public_key_sha256:
            raise KeyMaterialError(
                f"trust root key {self.label!r}: public_key_sha256 does not match its PEM "
                f"(computed {key.pem_sha256})"
            )
        return key

    def is_trusted_at(self, now: datetime) -> bool:
        if self.status is not KeyStatus.ACTIVE:
            return False
        if self.valid_from is not None and now < self.valid_from:
            return False
        return not (self.valid_until is not None and now >= self.valid_until)


class RootSignature(BaseModel):
    """One root-role signature embedded in the trust root (TUF's ``signatures`` list).

    It covers the canonical body (the document without ``signatures``, see
    ``core/trust/rotation.py``); ``key_id`` is only a hint naming the pinned key to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    signer: str = Field(min_length=1, max_length=256)
    algorithm: Literal["Ed25519"] = "Ed25519"
    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    value: str = Field(min_length=1, max_length=256)


class TrustRoot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.trust-root.v1"] = TRUST_ROOT_SCHEMA
    version: int = Field(ge=1, default=1)
    updated_at: datetime
    keys: tuple[TrustedKey, ...] = ()
    thresholds: dict[Role, int] = Field(default_factory=lambda: {role: 1 for role in Role})
    trusted_builders: tuple[str, ...] = DEFAULT_TRUSTED_BUILDERS
    #: a chained (signed) trust root stops being accepted as a rotation target after this time
    expires: datetime | None = None
    #: root-role signatures over the canonical body; empty for a legacy (unsigned) trust root
    signatures: tuple[RootSignature, ...] = ()

    @field_validator("expires")
    @classmethod
    def _aware_time(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must include a UTC offset")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrustRoot:
        problems: list[str] = []
        seen: set[str] = set()
        for key in self.keys:
            if key.key_id in seen:
                problems.append(f"key {key.key_id[:16]} is listed twice; give one entry several roles instead")
            seen.add(key.key_id)
            if Role.ROOT in key.roles and len(key.roles) > 1:
                # TUF keeps the root role apart: a key that also signs releases or approvals is exposed in
                # daily use, and whoever steals it could then rotate the trust root itself
                others = ", ".join(r.value for r in key.roles if r is not Role.ROOT)
                problems.append(f"key {key.key_id[:16]} ({key.label}): expected the root role alone, found root "
                                f"with {others}; pin a separate key for each")
        for role, threshold in self.thresholds.items():
            if threshold < 1:
                problems.append(f"thresholds.{role.value}: expected >= 1, found {threshold}")
        if problems:
            # every problem at once: an operator fixing the file should not discover them one by one
            raise ValueError("; ".join(problems))
        return self

    def keys_for(self, role: Role) -> list[TrustedKey]:
        return [key for key in self.keys if role in key.roles]

    def trusted_keys(self, role: Role, now: datetime) -> dict[str, PublicKey]:
        """Active, in-window keys of ``role`` by key_id (distinct key material)."""
        return {key.key_id: key.public_key() for key in self.keys_for(role) if key.is_trusted_at(now)}

    def threshold(self, role: Role) -> int:
        return self.thresholds.get(role, 1)

    def find(self, key_id: str) -> TrustedKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None


def parse_trust_root(data: bytes, *, source: str) -> TrustRoot:
    """Parse and fully validate a trust root; every key is loaded and point-checked now, so a
    small-order or mismatched key fails at load, not at first use."""
    try:
        raw = loads_strict(data, source=source, max_bytes=MAX_TRUST_ROOT_BYTES)
    except InputError:
        raise
    except Exception as exc:  # MalformedDocumentError is a verification error; here it is config
        raise ConfigError(str(exc)) from exc
    try:
        root = TrustRoot.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_every_problem(source, schema_problems(exc))) from exc
    key_problems: list[str] = []
    for key in root.keys:
        try:
            key.public_key()
        except KeyMaterialError as exc:
            key_problems.append(exc.message)
    if key_problems:
        raise ConfigError(_every_problem(source, key_problems))
    return root


_FOUND_MAX = 60


def schema_problems(exc: ValidationError) -> list[str]:
    """Every problem pydantic found, each ``<field path>: <message>[, found <value>]``, in order."""
    problems: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        message = str(error["msg"]).removeprefix("Value error, ")
        line = f"{where}: {message}"
        if error["type"] != "missing" and error["loc"] and not isinstance(error.get("input"), dict | list):
            found = repr(error.get("input"))
            if len(found) > _FOUND_MAX:
                found = found[: _FOUND_MAX - 1] + "…"
            line += f", found {found}"
        problems.append(line)
    return problems


def _every_problem(source: str, problems: list[str]) -> str:
    """One line naming the file and every problem (``; `` between them)."""
    count = len(problems)
    return f"{source}: {count} problem{'s' if count != 1 else ''}: " + "; ".join(problems)
