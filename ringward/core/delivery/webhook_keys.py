"""The signing material of a webhook sender as the receivers' files give it (``webhooks.yaml``:
inventory sources and handoff-status senders; ``sla-webhooks.yaml``: SLA acknowledgement sources)::

    secrets:                    # HMAC (v1) secrets, whsec_<base64>: two while rotating
      - env:JAMF_WEBHOOK_SECRET
    public_keys:                # Ed25519 (v1a) keys pinned as whpk_<base64>, literal or referenced
      - file:/etc/ringward/jamf.whpk

A secret is always a reference (``env:NAME`` / ``file:PATH``), never inline; a public key may be
inline (it is not secret). The field types below carry those checks, and every sender model declares
its two fields with them where its format puts them (not through a base class: a base's fields come
first, and a model reports the problem of its first bad field). The references are resolved by
:func:`ringward.operations.common.config_files.resolve_signing_keys`.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

#: at most this many secrets and this many public keys per sender (old and new during a rotation)
MAX_KEYS = 2
#: a secret reference: ``env:NAME`` or ``file:PATH``
REFERENCE = re.compile(r"^(env|file):(.+)$")
#: the problem of a sender with neither secrets nor public keys
NO_KEYS = "expected at least one of secrets (v1 HMAC) or public_keys (v1a Ed25519)"


def _secret_refs(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        if not REFERENCE.match(item):
            raise ValueError("must be a secret reference env:NAME or file:PATH (secrets are never inline)")
    return value


def _public_key_refs(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        if not (item.startswith("whpk_") or REFERENCE.match(item)):
            raise ValueError("must be a whpk_<base64> Ed25519 public key or a reference env:NAME / file:PATH")
    return value


#: HMAC (``v1``) secrets as references; declare as ``secrets: SecretRefs = ()``
SecretRefs = Annotated[tuple[str, ...], Field(max_length=MAX_KEYS), AfterValidator(_secret_refs)]
#: Ed25519 (``v1a``) public keys, ``whpk_<base64>`` or references; declare as ``public_keys: PublicKeyRefs = ()``
PublicKeyRefs = Annotated[tuple[str, ...], Field(max_length=MAX_KEYS), AfterValidator(_public_key_refs)]
