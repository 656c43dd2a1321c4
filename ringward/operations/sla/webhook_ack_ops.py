"""Signed acknowledgement callbacks: ``POST /webhooks/sla/acknowledgements`` (Standard Webhooks).

An on-call tool, a chat bot or a ticketing system calls back when a person acknowledges (or
escalates, resolves, dismisses) an SLA incident. The request is signed like the inventory
webhooks -- the same verification (:func:`ringward.core.delivery.webhook_signing.verify_webhook`:
HMAC ``v1`` and Ed25519 ``v1a``, two secrets or keys during a rotation, ``webhook-timestamp``
within the tolerance) and the same receipt store (``webhook_receipt``: a ``webhook-id`` is
accepted once per source, so a replay is refused).

The configuration is its own file, ``$RINGWARD_SLA_WEBHOOKS`` or ``<RINGWARD_HOME>/sla-webhooks.yaml``,
shaped like the inventory receiver's ``webhooks.yaml``::

    schema_version: ringward.sla-webhooks.v1
    max_body_bytes: 16384           # 413 above this (an acknowledgement is small; at most 65536)
    tolerance_seconds: 300          # webhook-timestamp within ±5 minutes of the server clock
    sources:
      pager-bridge:                 # who calls back; the receipt source is sla:pager-bridge
        secrets:                    # HMAC (v1) secrets, whsec_<base64>: two while rotating
          - env:PAGER_BRIDGE_WEBHOOK_SECRET
        public_keys:                # Ed25519 (v1a) keys pinned as whpk_<base64>, literal or referenced
          - file:/etc/ringward/pager-bridge.whpk
        groups: []                  # optional: the groups (<scope>/<route>) this source may decide

Secrets are references (``env:NAME`` / ``file:PATH``) resolved once at startup; a secret or key
used by two sources -- SLA, inventory or handoff-status senders -- is refused (the signature does
not cover the URL, so a message signed for one source must not verify at another). The path names no source: the
message's signature says which configured source sent it (at most one can verify).

The body (strict JSON, unknown fields refused)::

    {"group": "endpoint-remediation/critical", "state": "acknowledged",
     "acknowledged_by": "alice", "plan_id": "erslaesc-...", "comment": "on it"}

Order and answers (each refusal is evidence; none keeps an unauthenticated body):

1. over ``max_body_bytes`` -> 413; a signed header twice -> 401;
2. no configured source verifies (missing header, bad signature, stale or future timestamp) -> 401;
3. the ``webhook-id`` was accepted before for that source -> 409 ``webhook-replayed``;
4. from here the message is authentic, and its receipt is written with the outcome in one
   transaction (a retry of the same message is a replay): a body that does not parse -> 422;
   an unknown group -> 404; a group the source may not decide -> 403;
5. ``acknowledged_by`` is not the route's owner, a member of its group or an admin -> 403
   ``sla-ack-refused`` (an ``ack-refused`` history event, as from the CLI and the token API);
6. no open incident, or ``plan_id`` not the open one -> 409; else the decision is recorded
   (history event + ``endpoint-remediation-sla-notification-ack`` evidence carrying the raw
   body, so the signature can be checked again offline) -> 200.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.common.jsonio import loads_strict
from ringward.core.delivery.webhook_keys import NO_KEYS, PublicKeyRefs, SecretRefs
from ringward.core.delivery.webhook_signing import DEFAULT_TOLERANCE_SECONDS, VerifiedWebhook, verify_webhook
from ringward.core.errors import (
    ConfigError,
    InputError,
    NotFoundError,
    RingwardError,
    StateError,
    WebhookSignatureError,
    validation_problem,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.sla import acks
from ringward.core.sla.engine import plan
from ringward.core.sla.history import AckRefused, AckState
from ringward.core.sla.policy import SlaPolicy
from ringward.operations.common.config_files import KeyOwners, parse_yaml_model, resolve_signing_keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ringward.core.sla.history import Acknowledged
    from ringward.operations.inventory.webhook_ops import WebhookReceiver
    from ringward.store import Store

CONFIG_SCHEMA = "ringward.sla-webhooks.v1"
SLA_WEBHOOKS_ENV = "RINGWARD_SLA_WEBHOOKS"
KIND_WEBHOOK_REFUSED = "endpoint-remediation-sla-webhook-refused"
DEFAULT_MAX_BODY_BYTES = 16 * 1024
#: the API's own body cap: a larger configured value could never be reached
MAX_BODY_BYTES_LIMIT = 64 * 1024
MAX_SOURCES = 32
MAX_CONFIG_BYTES = 1024 * 1024
MAX_WEBHOOK_ID = 256
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,59}$"
RECEIPT_PREFIX = "sla:"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
GROUP_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._@-]{0,127}/)?[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def sla_webhooks_path() -> Path:
    """``$RINGWARD_SLA_WEBHOOKS`` or ``<RINGWARD_HOME>/sla-webhooks.yaml`` (absent: no source accepted)."""
    from ringward.settings import ringward_home

    value = os.environ.get(SLA_WEBHOOKS_ENV, "").strip()
    return Path(value).expanduser().absolute() if value else ringward_home().absolute() / "sla-webhooks.yaml"


class SlaWebhookSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secrets: SecretRefs = ()
    public_keys: PublicKeyRefs = ()
    groups: tuple[str, ...] = Field(default=(), max_length=1000)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.fullmatch(GROUP_PATTERN, item) or "/" not in item:
                raise ValueError(f"expected <scope>/<route id>, found {item[:80]!r}")
        return value


class SlaWebhooksConfig(BaseModel):
    """The file's model (the single source of its format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.sla-webhooks.v1"] = "ringward.sla-webhooks.v1"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=MAX_BODY_BYTES_LIMIT)
    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE_SECONDS, ge=1, le=3600)
    sources: dict[str, SlaWebhookSourceConfig] = Field(default_factory=dict, max_length=MAX_SOURCES)

    @field_validator("sources")
    @classmethod
    def _names(cls, value: dict[str, SlaWebhookSourceConfig]) -> dict[str, SlaWebhookSourceConfig]:
        for name, source in value.items():
            if not re.fullmatch(SOURCE_PATTERN, name):
                raise ValueError(f"source name {name[:80]!r}: expected lowercase letters, digits, - or _ (1-60)")
            if not source.secrets and not source.public_keys:
                raise ValueError(f"{name}: {NO_KEYS}")
        return value


@dataclass(frozen=True)
class SlaWebhookSource:
    """A configured source with its secrets resolved (never printed: ``repr=False``)."""

    name: str
    secrets: tuple[str, ...] = field(repr=False)
    public_keys: tuple[Ed25519PublicKey, ...] = field(repr=False)
    groups: tuple[str, ...] = ()

    @property
    def receipt_source(self) -> str:
        return RECEIPT_PREFIX + self.name


@dataclass(frozen=True)
class SlaWebhookReceiver:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    sources: Mapping[str, SlaWebhookSource] = field(default_factory=dict)
    path: Path | None = None


def parse_config(data: bytes, *, source: str) -> SlaWebhooksConfig:
    """Parse ``sla-webhooks.yaml`` (YAML or JSON).

    Raises:
        ConfigError: one line naming the file and field.
    """
    return parse_yaml_model(data, SlaWebhooksConfig, source=source, max_bytes=MAX_CONFIG_BYTES)


def resolve_config(
    config: SlaWebhooksConfig,
    *,
    source: str,
    environ: Mapping[str, str] | None = None,
    inventory: WebhookReceiver | None = None,
) -> SlaWebhookReceiver:
    """Resolve every reference and parse every key now (a bad secret fails at startup).

    Raises:
        ConfigError: ``<file>: sources.<name>.<field>[i]: <problem>`` (the reference, never a value),
            including a secret or key shared with another source (SLA or inventory).
    """
    env = os.environ if environ is None else environ
    owners = KeyOwners("the signature does not cover the URL, so each source needs its own {}")
    if inventory is not None:
        for label, senders in (("inventory source", inventory.sources),
                               ("handoff-status sender", getattr(inventory, "handoff_senders", None) or {})):
            for other, configured in senders.items():
                owners.pin(f"{label} {other}", configured.secrets, configured.public_keys)
    resolved: dict[str, SlaWebhookSource] = {}
    for name, item in config.sources.items():
        secrets, keys = resolve_signing_keys(item.secrets, item.public_keys, where=f"{source}: sources.{name}",
                                             owner=f"source {name}", owners=owners, environ=env)
        resolved[name] = SlaWebhookSource(name=name, secrets=secrets, public_keys=keys, groups=item.groups)
    return SlaWebhookReceiver(max_body_bytes=config.max_body_bytes, tolerance_seconds=config.tolerance_seconds,
                              sources=resolved)


def load_receiver(path: Path | None = None, *, environ: Mapping[str, str] | None = None,
                  inventory: WebhookReceiver | None = None) -> SlaWebhookReceiver:
    """The receiver from ``path`` (default :func:`sla_webhooks_path`); an absent file accepts nothing."""
    target = path or sla_webhooks_path()
    if not target.exists():
        return SlaWebhookReceiver(path=target)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read ({type(exc).__name__})") from None
    loaded = resolve_config(parse_config(data, source=str(target)), source=str(target), environ=environ,
                            inventory=inventory)
    return SlaWebhookReceiver(max_body_bytes=loaded.max_body_bytes, tolerance_seconds=loaded.tolerance_seconds,
                              sources=loaded.sources, path=target)


class AckCallback(BaseModel):
    """The signed body: which group's incident, the decision, and the person who took it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str = Field(min_length=1, max_length=257, pattern=GROUP_PATTERN)
    state: Literal["acknowledged", "escalated", "resolved", "dismissed"]
    acknowledged_by: str = Field(pattern=NAME_PATTERN)
    plan_id: str | None = Field(default=None, pattern=r"^erslaesc-[0-9a-f]{16}$")
    report_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    comment: str | None = Field(default=None, max_length=2000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")


class WebhookRefused(RingwardError):
    """A refused callback with its HTTP status and error code (recorded before it is raised)."""

    code = "webhook-refused"

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class _Message:
    source: SlaWebhookSource
    verified: VerifiedWebhook
    signature: str
    body: bytes
    digest: str

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source.name,
            "webhook_id": self.verified.msg_id,
            "webhook_timestamp": self.verified.timestamp,
            "signature_version": self.verified.version,
            "webhook_signature": self.signature[:2000],
            "body_sha256": self.digest,
            "body_bytes": len(self.body),
            # the exact signed bytes: with the secret / public key the signature can be checked again
            "body_base64": base64.b64encode(self.body).decode("ascii"),
        }


def record_unauthenticated(store: Store, *, status: int, code: str, reason: str, webhook_id: str | None,
                           body: bytes, now: datetime) -> None:
    """Evidence of a refusal before the sender is known: never the body, only its digest and size."""
    payload = {
        "schema_version": "ringward.refusal.v1",
        "metadata_kind": KIND_WEBHOOK_REFUSED,
        "refused": True,
        "error": {"code": code, "http_status": status, "message": reason[:500]},
        "webhook_id": None if webhook_id is None else webhook_id[:MAX_WEBHOOK_ID],
        "body_sha256": hashlib.sha256(body).hexdigest() if body else None,
        "body_bytes": len(body),
    }
    store.append(EvidenceDraft(kind=KIND_WEBHOOK_REFUSED, actor="webhook:sla", payload=payload,
                               subject=EvidenceSubject(status="refused", success=False)), now=now)


def _verify(receiver: SlaWebhookReceiver, headers: Mapping[str, str], body: bytes, now: datetime) -> _Message:
    lowered = {k.lower(): v for k, v in headers.items()}
    claimed = lowered.get("webhook-id")
    if claimed is not None and not 0 < len(claimed) <= MAX_WEBHOOK_ID:
        raise WebhookSignatureError(f"webhook-id: expected 1-{MAX_WEBHOOK_ID} characters, found {len(claimed)}")
    if not receiver.sources:
        raise WebhookSignatureError("no SLA webhook source is configured")
    first: WebhookSignatureError | None = None
    for source in receiver.sources.values():
        try:
            verified = verify_webhook(dict(lowered), body, now=int(now.timestamp()), secrets=source.secrets,
                                      public_keys=source.public_keys, tolerance_seconds=receiver.tolerance_seconds)
        except WebhookSignatureError as exc:
            first = first or exc
            if "no signature" not in exc.message:
                raise  # a missing header or a stale timestamp is the same for every source
            continue
        return _Message(source, verified, lowered.get("webhook-signature", ""), body, hashlib.sha256(body).hexdigest())
    assert first is not None
    raise WebhookSignatureError(f"no signature in webhook-signature verifies under any configured SLA source "
                                f"({len(receiver.sources)})")


def _receipt(message: _Message, status: str, reason: str | None = None) -> Any:
    from ringward.store.sla.ledger import WebhookReceiptRow

    return WebhookReceiptRow(source=message.source.receipt_source, webhook_id=message.verified.msg_id,
                             body_sha256=message.digest, body_bytes=len(message.body), status=status, reason=reason)


def _reject(store: Store, scope: str, message: _Message, *, status: int, code: str, reason: str,
            now: datetime, refusal: AckRefused | None = None) -> WebhookRefused:
    """Record an authentic message's rejection with its receipt (a retry is then a replay)."""
    from ringward.store.sla.ledger import SlaLedger

    payload = {
        "schema_version": "ringward.refusal.v1",
        "metadata_kind": KIND_WEBHOOK_REFUSED,
        "refused": True,
        "error": {"code": code, "http_status": status, "message": reason[:500]},
        **message.meta(),
    }
    actor = refusal.by if refusal is not None else f"webhook:{message.source.name}"
    if refusal is not None:
        draft = EvidenceDraft(kind="endpoint-remediation-sla-notification-ack-refused", actor=actor,
                              subject=EvidenceSubject(status="refused", success=False),
                              payload={**refusal.model_dump(mode="json"), "webhook": payload})
    else:
        draft = EvidenceDraft(kind=KIND_WEBHOOK_REFUSED, actor=actor, payload=payload,
                              subject=EvidenceSubject(status="refused", success=False))
    SlaLedger(store).record(scope, [refusal] if refusal is not None else [], [draft], now=now,
                            receipt=_receipt(message, "rejected", f"{status} {code}: {reason}"))
    return WebhookRefused(status, code, reason)


def accept_acknowledgement(
    store: Store,
    receiver: SlaWebhookReceiver,
    policy: SlaPolicy,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Verify, refuse replays, authorise the named person, record (module docstring, steps 2-6).
    Returns the recorded acknowledgement (``cavra.endpoint_remediation_sla.notification_ack.v1``
    plus ``webhook``).

    Raises:
        WebhookSignatureError: step 2 (recorded, without the body).
        WebhookReplayError: step 3 (recorded).
        WebhookRefused: steps 4-6 with the HTTP status (recorded with the message's receipt).
        acks.AcknowledgementRefused: step 5 (recorded with the receipt).
    """
    from ringward.operations.sla import sla_ops
    from ringward.store.inventory.receipts import WebhookReceiptRepository, WebhookReplayError
    from ringward.store.sla.ledger import SlaLedger

    now = now.astimezone(UTC)
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message = _verify(receiver, lowered, body, now)
    except WebhookSignatureError as exc:
        record_unauthenticated(store, status=401, code=exc.code, reason=exc.message,
                               webhook_id=lowered.get("webhook-id"), body=body, now=now)
        raise
    if WebhookReceiptRepository(store).seen(message.source.receipt_source, message.verified.msg_id):
        replay = WebhookReplayError(f"webhook-id {message.verified.msg_id[:80]!r} was already accepted for "
                                    f"source {message.source.receipt_source}")
        record_unauthenticated(store, status=409, code=replay.code, reason=replay.message,
                               webhook_id=message.verified.msg_id, body=b"", now=now)
        raise replay
    try:
        callback = AckCallback.model_validate(loads_strict(body, source="body"))
    except ValidationError as exc:
        raise _reject(store, policy.scope, message, status=422, code="bad-input", reason=validation_problem(exc),
                      now=now) from None
    except RingwardError as exc:  # not strict JSON (duplicate keys, NaN, bad UTF-8, ...)
        raise _reject(store, policy.scope, message, status=422, code="bad-input", reason=exc.message,
                      now=now) from None
    try:
        scoped, key, owner = sla_ops.resolve(policy, callback.group)
    except NotFoundError as exc:
        raise _reject(store, policy.scope, message, status=404, code=exc.code, reason=exc.message, now=now) from None
    if message.source.groups and key not in message.source.groups:
        reason = f"source {message.source.name} may decide {', '.join(message.source.groups)}, not {key}"
        refusal = AckRefused(at=now, group_key=key, state=AckState(callback.state), by=callback.acknowledged_by,
                             reason=reason)
        raise _reject(store, scoped.scope, message, status=403, code="forbidden", reason=reason, now=now,
                      refusal=refusal)
    try:
        report = sla_ops.current_report(store, policy, scoped.scope, now=now, report_id=callback.report_id)
    except (NotFoundError, InputError) as exc:
        status = 404 if isinstance(exc, NotFoundError) else 422
        raise _reject(store, scoped.scope, message, status=status, code=exc.code, reason=exc.message,
                      now=now) from None
    ledger = SlaLedger(store)
    current = plan(ledger.history(scoped.scope), scoped, report, now)
    try:
        event = acks.acknowledge(current, scoped, group=key, state=callback.state, by=callback.acknowledged_by,
                                 at=now, comment=callback.comment, via=message.source.name)
    except acks.AcknowledgementRefused as refused:
        raise _reject(store, scoped.scope, message, status=403, code=refused.code, reason=refused.message, now=now,
                      refusal=refused.event) from None
    except StateError as exc:
        raise _reject(store, scoped.scope, message, status=409, code=exc.code, reason=exc.message, now=now) from None
    incident = next(i for i in current.incidents if i.group_key == key)
    if callback.plan_id is not None and callback.plan_id != incident.plan_id:
        reason = f"plan_id: {callback.plan_id} is not the open incident of {key} (that is {incident.plan_id})"
        raise _reject(store, scoped.scope, message, status=409, code="state", reason=reason, now=now)
    return _record_ack(store, scoped.scope, event, report.report_id, incident.plan_id, owner, message, now)


def _record_ack(store: Store, scope: str, event: Acknowledged, report_id: str, plan_id: str, owner: str,
                message: _Message, now: datetime) -> dict[str, Any]:
    from ringward.operations.sla.sla_ops import KIND_ACK, ack_payload
    from ringward.store.sla.ledger import SlaLedger

    payload = {**ack_payload(event, report_id), "plan_id": plan_id, "owner": owner, "via": message.source.name,
               "webhook": message.meta()}
    draft = EvidenceDraft(kind=KIND_ACK, actor=event.by, subject=EvidenceSubject(status=event.state.value),
                          payload=payload)
    (record,) = SlaLedger(store).record(scope, [event], [draft], now=now, receipt=_receipt(message, "ingested"))
    out = {k: v for k, v in payload.items() if k != "webhook"}
    out["webhook"] = {k: v for k, v in message.meta().items() if k not in ("body_base64", "webhook_signature")}
    out["evidence_id"] = str(record.id)
    return out
