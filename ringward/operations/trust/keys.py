"""Key files and trust-root files on disk."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import ConfigError, InputError, KeyMaterialError, OutputExistsError
from ringward.core.trust.keys import (
    MAX_PEM_BYTES,
    PublicKey,
    load_private_key_pem,
    load_public_key_pem,
    private_key_pem,
    public_key_of,
)
from ringward.core.trust.root import (
    MAX_TRUST_ROOT_BYTES,
    KeyStatus,
    Role,
    TrustedKey,
    TrustRoot,
    parse_trust_root,
)
from ringward.core.trust.rotation import is_chained
from ringward.operations.common.files import atomic_write, read_capped

#: environment variable holding the release signing key as PEM text (literal "\n" allowed)
SIGNING_KEY_ENV = "RINGWARD_SIGNING_KEY"
#: the reference system's variable, accepted for drop-in CI compatibility
REFERENCE_SIGNING_KEY_ENV = "CAVRA_GO_RELEASE_SIGNING_KEY"


def generate_keypair(private_path: Path, public_path: Path) -> PublicKey:
    """Write a new Ed25519 key pair (PKCS#8 PEM, private key mode 0600); refuse to overwrite."""
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise OutputExistsError(f"{path}: already exists; refusing to overwrite a key file")
    key = Ed25519PrivateKey.generate()
    public = public_key_of(key)
    atomic_write(private_path, private_key_pem(key), mode=0o600, overwrite=False)
    atomic_write(public_path, public.pem.encode("ascii"), mode=0o644, overwrite=False)
    return public


def load_signing_key(path: Path | None, *, env: dict[str, str] | None = None) -> Ed25519PrivateKey | None:
    """The release signing key from ``path`` or ``$RINGWARD_SIGNING_KEY`` (or the reference
    ``$CAVRA_GO_RELEASE_SIGNING_KEY``); None when neither is given. Never logged."""
    environ = os.environ if env is None else env
    if path is not None:
        data = read_capped(path, MAX_PEM_BYTES, source=str(path))
        return load_private_key_pem(data, source=str(path))
    for name in (SIGNING_KEY_ENV, REFERENCE_SIGNING_KEY_ENV):
        value = environ.get(name)
        if value:
            return load_private_key_pem(value.encode("utf-8"), source=f"${name}")
    return None


def load_public_key_file(path: Path) -> PublicKey:
    return load_public_key_pem(read_capped(path, MAX_PEM_BYTES, source=str(path)), source=str(path))


def load_trust_root(path: Path) -> TrustRoot:
    try:
        data = read_capped(path, MAX_TRUST_ROOT_BYTES, source=str(path))
    except InputError as exc:
        raise ConfigError(str(exc)) from exc
    return parse_trust_root(data, source=str(path))


def save_trust_root(path: Path, root: TrustRoot, *, overwrite: bool) -> None:
    atomic_write(path, dumps_document(root.model_dump(mode="json", exclude_none=True)), overwrite=overwrite)


def next_version(root: TrustRoot) -> int:
    """The version an edit of ``root`` produces.

    Editing a signed trust root starts its successor N+1 (unsigned until ``trust sign-root``);
    further edits of that unsigned draft of a chained root keep N+1, so the next signed version
    is exactly N+1 however many edits it took. A legacy (unchained) root bumps on every edit, as
    it always did."""
    if root.signatures or not is_chained(root):
        return root.version + 1
    return root.version


def edited(root: TrustRoot, now: datetime, **changes: object) -> TrustRoot:
    """``root`` with ``changes``, the next version and no signatures (they covered the old body), validated
    as a whole like a loaded trust root (an edit can never write one that would not load).

    Raises:
        InputError: the edited trust root breaks a rule (one line, every problem).
    """
    updated = root.model_copy(update={**changes, "version": next_version(root), "updated_at": now, "signatures": ()})
    try:
        return TrustRoot.model_validate(updated.model_dump())
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise InputError(f"trust root: refusing the change: {problems}") from None


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InputError(f"role {value!r}: expected one of {', '.join(r.value for r in Role)}") from None


def parse_role_assignment(text: str, option: str) -> tuple[Role, str]:
    """``ROLE=VALUE`` as used by ``--key release=P.pem`` and ``--threshold release=2``."""
    role, sep, value = text.partition("=")
    if not sep or not value:
        raise InputError(f"{option}: expected ROLE=VALUE, found {text!r}")
    return _role(role.strip()), value.strip()


def new_trusted_key(public: PublicKey, roles: Sequence[Role], label: str,
                    valid_from: datetime | None, valid_until: datetime | None) -> TrustedKey:
    return TrustedKey(
        key_id=public.key_id,
        label=label,
        roles=tuple(dict.fromkeys(roles)),
        status=KeyStatus.ACTIVE,
        public_key_pem=public.pem,
        public_key_sha256=public.pem_sha256,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def add_key(root: TrustRoot, key: TrustedKey, now: datetime) -> TrustRoot:
    existing = root.find(key.key_id)
    if existing is not None:
        if existing.status is KeyStatus.REVOKED:
            raise KeyMaterialError(f"key {existing.label!r} ({key.key_id[:16]}) is revoked; it cannot be re-added")
        merged = existing.model_copy(update={"roles": tuple(dict.fromkeys(existing.roles + key.roles))})
        keys = tuple(merged if k.key_id == key.key_id else k for k in root.keys)
    else:
        if any(k.label == key.label for k in root.keys):
            raise InputError(f"--label: a key labelled {key.label!r} already exists")
        keys = (*root.keys, key)
    return edited(root, now, keys=keys)


def key_selector(selector: str | None, public_key: Path | None) -> str:
    """The key a status change names: a label, a key_id (prefix), or a public key file (the one the
    user holds), given as ``KEY`` or ``--public-key``. A ``KEY`` naming an existing file is read as a
    public key file; the result is that key's key_id.

    Raises:
        InputError: neither or both given; the file is not a usable public key.
    """
    if selector is not None and public_key is not None:
        raise InputError("KEY and --public-key: give one of them, not both")
    if public_key is None and selector is not None and (os.sep in selector or os.path.isfile(selector)):
        public_key = Path(selector)
    if public_key is not None:
        return load_public_key_file(public_key).key_id
    if selector is None:
        raise InputError("KEY: expected a label, key_id (prefix) or public key file (or --public-key FILE)")
    return selector


def change_key_status(root: TrustRoot, selector: str, status: KeyStatus, reason: str | None,
                      now: datetime) -> TrustRoot:
    """Retire or revoke the key whose label, key_id or key_id prefix (>= 8 hex) is ``selector``."""
    matches = [k for k in root.keys if selector in (k.label, k.key_id)
               or (len(selector) >= 8 and k.key_id.startswith(selector))]
    if not matches:
        raise InputError(f"key {selector!r}: no key with that label or key_id in the trust root")
    if len(matches) > 1:
        raise InputError(f"key {selector!r}: ambiguous, matches {len(matches)} keys")
    target = matches[0]
    if target.status is KeyStatus.REVOKED:
        raise InputError(f"key {target.label!r} is already revoked")
    updated = target.model_copy(update={"status": status, "status_changed_at": now, "status_reason": reason})
    keys = tuple(updated if k.key_id == target.key_id else k for k in root.keys)
    return edited(root, now, keys=keys)
