"""Small configuration files the operators write (``webhooks.yaml``, ``sla-webhooks.yaml``): parsed once
into their pydantic model with one-line errors, and secret references (``env:NAME``, ``file:PATH``)
resolved at load, so a bad reference fails at startup with the reference named, never the value; the
webhook receivers' signing secrets and keys resolved and refused when two senders share one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ringward.core.delivery.webhook_signing import load_public_key, public_key_bytes, secret_bytes
from ringward.core.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Model = TypeVar("Model", bound=BaseModel)

#: a file-backed secret is small; more than this is read no further
MAX_SECRET_FILE_BYTES = 8192


def parse_yaml_model(data: bytes, model: type[Model], *, source: str, max_bytes: int) -> Model:
    """``data`` (YAML or JSON) as ``model``.

    Raises:
        ConfigError: one line naming ``source`` and the first bad field.
    """
    if len(data) > max_bytes:
        raise ConfigError(f"{source}: larger than {max_bytes} bytes")
    try:
        document = yaml.safe_load(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(document).__name__}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


def resolve_secret_ref(ref: str, *, where: str, environ: Mapping[str, str]) -> str:
    """The value behind ``env:NAME`` or ``file:PATH`` (stripped).

    Raises:
        ConfigError: ``<where>: ...`` naming the reference (never a value) when it is unset, unreadable
            or empty.
    """
    scheme, _, name = ref.partition(":")
    if scheme == "env":
        value = environ.get(name, "")
        if not value.strip():
            raise ConfigError(f"{where}: environment variable {name} (from {ref}) is not set")
        return value.strip()
    try:
        data = Path(name).expanduser().read_bytes()[:MAX_SECRET_FILE_BYTES]
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {ref} ({type(exc).__name__})") from None
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        raise ConfigError(f"{where}: {ref} is empty")
    return text


@dataclass
class KeyOwners:
    """Which webhook sender holds each HMAC secret and Ed25519 public key resolved so far.

    A signature covers the message, not the URL it was posted to: a secret or key held by two senders
    would let a message signed for one verify, and be accepted as new, at the other (receipts are
    kept per sender). ``reason`` ends the refusal, ``{}`` standing for ``secret`` or ``key``.
    """

    reason: str
    secrets: dict[bytes, str] = field(default_factory=dict)
    keys: dict[bytes, str] = field(default_factory=dict)

    def pin(self, owner: str, secrets: Iterable[str], public_keys: Iterable[Ed25519PublicKey]) -> None:
        """Record the resolved secrets and keys of ``owner`` (a sender configured elsewhere); the
        first holder of each stays its owner."""
        for value in secrets:
            self.secrets.setdefault(secret_bytes(value), owner)
        for key in public_keys:
            self.keys.setdefault(public_key_bytes(key), owner)

    def claim(self, kind: Literal["secret", "key"], raw: bytes, owner: str, *, where: str) -> None:
        """Take ``raw`` for ``owner``.

        Raises:
            ConfigError: ``<where>: also used by <holder>; <reason>`` (``pinned`` for a key).
        """
        holder = (self.secrets if kind == "secret" else self.keys).setdefault(raw, owner)
        if holder != owner:
            verb = "used" if kind == "secret" else "pinned"
            raise ConfigError(f"{where}: also {verb} by {holder}; {self.reason.format(kind)}")


def resolve_signing_keys(
    secrets: Sequence[str],
    public_keys: Sequence[str],
    *,
    where: str,
    owner: str,
    owners: KeyOwners,
    environ: Mapping[str, str],
    claim_after_resolving: bool = False,
) -> tuple[tuple[str, ...], tuple[Ed25519PublicKey, ...]]:
    """A sender's secrets (their values) and public keys (parsed), from the references its file gives
    (:mod:`ringward.core.delivery.webhook_keys`), each claimed for ``owner`` in ``owners``: as soon
    as it is resolved, or with ``claim_after_resolving`` once all of the sender's are.

    Raises:
        ConfigError: ``<where>.secrets[i] (<ref>): <problem>`` (unset, unreadable, empty, not a
            secret, or held by another sender) or ``<where>.public_keys[i]: <problem>``; the
            reference is named, never a value.
        KeyMaterialError: a public key is a small-order or invalid point.
    """
    values: list[str] = []
    keys: list[Ed25519PublicKey] = []
    later: list[tuple[Literal["secret", "key"], bytes, str]] = []

    def claim(kind: Literal["secret", "key"], raw: bytes, at: str) -> None:
        if claim_after_resolving:
            later.append((kind, raw, at))
        else:
            owners.claim(kind, raw, owner, where=at)

    for i, ref in enumerate(secrets):
        at = f"{where}.secrets[{i}]"
        value = resolve_secret_ref(ref, where=at, environ=environ)
        try:
            raw = secret_bytes(value)
        except ConfigError as exc:
            raise ConfigError(f"{at} ({ref}): {exc.message}") from None
        values.append(value)
        claim("secret", raw, f"{at} ({ref})")
    for i, ref in enumerate(public_keys):
        at = f"{where}.public_keys[{i}]"
        text = ref if ref.startswith("whpk_") else resolve_secret_ref(ref, where=at, environ=environ)
        key = load_public_key(text, source=at)
        keys.append(key)
        claim("key", public_key_bytes(key), at)
    for kind, raw, at in later:
        owners.claim(kind, raw, owner, where=at)
    return tuple(values), tuple(keys)
