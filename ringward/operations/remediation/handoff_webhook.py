"""``POST /webhooks/handoff-status``: signed remediation handoff statuses (§9.4) from the systems that
work the handoff (Jira, ServiceNow, a private queue, ...).

The same machinery as the signed inventory webhooks (:mod:`ringward.operations.inventory.webhook_ops`):
Standard Webhooks signatures (HMAC ``v1`` / Ed25519 ``v1a``, two secrets while rotating) under the
senders configured in ``webhooks.yaml``::

    handoff_status:
      max_body_bytes: 65536
      senders:
        jira-cloud:                   # recorded as webhook:jira-cloud
          providers: [jira]           # whose work items it may update (empty: any)
          secrets: [env:JIRA_STATUS_WEBHOOK_SECRET]

timestamps within the tolerance, a ``webhook-id`` accepted once per sender (persisted), the raw body
kept as evidence with its receipt before anything is decided; refusals (bad or missing signature,
stale timestamp, replay, oversized body) are evidence records without the body.

The body (``ringward.handoff-status-callback.v1``)::

    {"handoff_id": "erh_…", "provider": "jira", "status": "in_progress",
     "external_ref": "OPS-1234", "external_url": "https://…", "note": "…", "callback": {…}}

is then recorded with the remediation domain's real transition rules
(:func:`~ringward.operations.remediation.remediation_ops.record_handoff_status`: completed, failed and
cancelled are final, nothing returns to queued). The answer names the outcome: 200 recorded; 422
malformed body; 403 a provider the sender may not update; 404 unknown handoff; 409 an illegal
transition (recorded as a refusal). A crash after the body was stored leaves the receipt open for
``ringward inventory recover-webhooks``. ``callback`` is kept redacted (authenticating keys and
URL secrets removed, the sender's own secrets scrubbed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.errors import (
    BindingMismatchError,
    InputError,
    MalformedDocumentError,
    NotFoundError,
    RingwardError,
    StateError,
    StoreConflictError,
    WebhookSignatureError,
    validation_problem,
)
from ringward.operations.inventory.webhook_ops import (
    HANDOFF_RECEIPT_PREFIX,
    HANDOFF_RECEIPT_PROVIDER,
    Accepted,
    Signer,
    WebhookReceiver,
    record_refusal,
    store_signed_body,
    verify_signed,
)

if TYPE_CHECKING:
    from ringward.store import Store
    from ringward.store.inventory.receipts import WebhookReceipt

PATH = "/webhooks/handoff-status"
KIND_HANDOFF_WEBHOOK = "endpoint-remediation-handoff-webhook"
CALLBACK_SCHEMA = "ringward.handoff-status-callback.v1"
#: the ``source`` refusals before a sender is known are recorded under
REFUSAL_SOURCE = "handoff-status"
MAX_CALLBACK_BYTES = 16 * 1024
MAX_CALLBACK_DEPTH = 8
_CONFLICT_ATTEMPTS = 3


class HandoffStatusCallback(BaseModel):
    """The body of a handoff-status webhook (its only format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.handoff-status-callback.v1"] = "ringward.handoff-status-callback.v1"
    handoff_id: str = Field(pattern=r"^erh_[0-9a-f]{12}$")
    provider: str = Field(min_length=1, max_length=32)
    status: str = Field(min_length=1, max_length=32)
    external_ref: str | None = Field(default=None, min_length=1, max_length=256)
    external_url: str | None = Field(default=None, min_length=1, max_length=2048)
    note: str | None = Field(default=None, max_length=4096)
    callback: dict[str, Any] | None = None


def parse_callback(body: bytes, *, source: str) -> HandoffStatusCallback:
    """Raises InputError naming the field (one line)."""
    from ringward.core.common.jsonio import loads_strict

    try:
        document = loads_strict(body, source=source, max_bytes=len(body) + 1)
    except MalformedDocumentError as exc:
        raise InputError(exc.message) from exc
    if not isinstance(document, dict):
        raise InputError(f"{source}: expected a JSON object, found {type(document).__name__}")
    try:
        callback = HandoffStatusCallback.model_validate(document)
    except ValidationError as exc:
        raise InputError(f"{source}: {validation_problem(exc)}") from None
    if callback.callback is not None and len(json.dumps(callback.callback, default=str)) > MAX_CALLBACK_BYTES:
        raise InputError(f"{source}: callback: expected at most {MAX_CALLBACK_BYTES} bytes of JSON")
    return callback


def redact_callback(value: Any, secrets: tuple[str, ...] = (), *, depth: int = 0) -> Any:
    """The provider's callback without what authenticates: values under credential-like keys are
    replaced, URLs lose userinfo, query and secret paths, the sender's secrets are scrubbed."""
    from ringward.core.common.redaction import REDACTED, SecretScrubber, is_sensitive_header, redact_url

    if depth > MAX_CALLBACK_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {str(k): REDACTED if is_sensitive_header(str(k)) else redact_callback(v, secrets, depth=depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_callback(v, secrets, depth=depth + 1) for v in value]
    if isinstance(value, str):
        text = redact_url(value) if value.startswith(("http://", "https://")) else value
        return SecretScrubber(secrets).scrub(text) if secrets else text
    return value


def _signers(receiver: WebhookReceiver) -> list[Signer]:
    return [Signer(name, s.secrets, s.public_keys) for name, s in receiver.handoff_senders.items()]


def accept_handoff_status(store: Store, receiver: WebhookReceiver, headers: Mapping[str, str], body: bytes, *,
                          now: datetime) -> Accepted:
    """Verify the signature against every configured sender, refuse replays, keep the body.

    Raises:
        NotFoundError: no sender is configured (not recorded).
        WebhookSignatureError: missing header, bad signature, stale or future timestamp (recorded).
        WebhookReplayError: the ``webhook-id`` was accepted before from this sender (recorded).
    """
    import hashlib

    if not receiver.handoff_senders:
        raise NotFoundError("handoff-status webhooks are not configured (handoff_status.senders in webhooks.yaml)")
    try:
        signer, verified = verify_signed(headers, body, _signers(receiver), now=now,
                                         tolerance_seconds=receiver.tolerance_seconds)
    except WebhookSignatureError as exc:
        claimed = {k.lower(): v for k, v in headers.items()}.get("webhook-id")
        record_refusal(store, source=REFUSAL_SOURCE, provider=HANDOFF_RECEIPT_PROVIDER, status_code=401,
                       error=exc.code, reason=exc.message, webhook_id=claimed,
                       body_sha256=hashlib.sha256(body).hexdigest(), body_bytes=len(body), now=now,
                       kind=KIND_HANDOFF_WEBHOOK)
        raise
    return store_signed_body(
        store, kind=KIND_HANDOFF_WEBHOOK, receipt_source=HANDOFF_RECEIPT_PREFIX + signer.name,
        refusal_source=f"{REFUSAL_SOURCE}:{signer.name}", actor=f"webhook:{signer.name}",
        provider=HANDOFF_RECEIPT_PROVIDER, channel=None, verified=verified, body=body, now=now,
        payload={"schema_version": "ringward.handoff-status-receipt.v1", "sender": signer.name})


def status_root() -> Path:
    """Where webhook-recorded status files are written: ``<home>/endpoint-remediation-handoff-status``."""
    from ringward.settings import ringward_home

    return ringward_home().absolute() / "endpoint-remediation-handoff-status"


def process_handoff_receipt(store: Store, receiver: WebhookReceiver, receipt: WebhookReceipt, *,
                            now: datetime) -> dict[str, Any]:
    """Record the status a stored callback carries and finish its receipt; never raises for the
    callback's content (the outcome names the HTTP status). ``http_status`` 503 leaves it open.

    Raises:
        EvidenceIntegrityError: the stored body is gone or altered (the receipt stays open).
    """
    from ringward.core.remediation.handoff import normalise_provider
    from ringward.core.remediation.handoff_build import KIND_STATUS
    from ringward.operations.inventory.webhook_ops import check_stored_body
    from ringward.operations.promotion.channel_ops import record_refusal as record_decision_refusal
    from ringward.operations.remediation.remediation_ops import record_handoff_status
    from ringward.store.inventory.receipts import INGESTED, REJECTED, WebhookReceiptRepository

    repo = WebhookReceiptRepository(store)
    check_stored_body(receipt)
    name = receipt.source.removeprefix(HANDOFF_RECEIPT_PREFIX)
    actor = f"webhook:{name}"
    base = {"receipt_id": receipt.receipt_id, "sender": name, "webhook_id": receipt.webhook_id}

    def reject(http_status: int, exc: RingwardError) -> dict[str, Any]:
        repo.finish(receipt.receipt_id, REJECTED, reason=exc.message, now=now)
        return {**base, "status": "rejected", "http_status": http_status, "error": exc.code, "message": exc.message}

    sender = receiver.handoff_senders.get(name)
    try:
        callback = parse_callback(Path(receipt.raw_path).read_bytes(), source="handoff-status body")
        provider = normalise_provider(callback.provider).value
    except InputError as exc:
        return reject(422, exc)
    except ValueError as exc:
        return reject(422, InputError(f"handoff-status body: provider: {exc}"))
    if sender is None or (sender.providers and provider not in sender.providers):
        allowed = "none (no longer configured)" if sender is None else ", ".join(sender.providers)
        refused = BindingMismatchError(f"sender {name} may update the work items of {allowed}, not {provider}")
        record_decision_refusal(store, KIND_STATUS, refused, actor=actor, now=now,
                                subject=_subject(provider),
                                payload={"handoff_id": callback.handoff_id, "provider": provider,
                                         "status": callback.status, "receipt_id": receipt.receipt_id})
        return reject(403, refused)
    secrets = sender.secrets
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            result = record_handoff_status(
                store, handoff=callback.handoff_id, provider=provider, status=callback.status, actor=actor,
                now=now, note=callback.note, external_ref=callback.external_ref,
                external_url=None if callback.external_url is None else redact_callback(callback.external_url),
                callback_payload=None if callback.callback is None else redact_callback(callback.callback, secrets),
                output_root=status_root())
        except StoreConflictError as exc:  # another status of the same work item won: decide again
            if attempt + 1 == _CONFLICT_ATTEMPTS:
                return {**base, "status": "open", "http_status": 503, "error": exc.code, "message": exc.message}
            continue
        except InputError as exc:
            return reject(422, exc)
        except NotFoundError as exc:
            return reject(404, exc)
        except StateError as exc:  # an illegal transition (recorded as a refusal by the operation)
            return reject(409, exc)
        break
    repo.finish(receipt.receipt_id, INGESTED, now=now)
    return {**base, "status": "recorded", "http_status": 200, "status_id": result["status_id"],
            "handoff_id": result["handoff_id"], "provider": result["provider"], "handoff_status": result["status"],
            "previous_status": result["previous_status"], "final": result["final"],
            "evidence_id": result["evidence"]["evidence_id"]}


def _subject(provider: str) -> Any:
    from ringward.core.evidence.records import EvidenceSubject

    return EvidenceSubject(provider=provider)


__all__ = ["KIND_HANDOFF_WEBHOOK", "PATH", "HandoffStatusCallback", "accept_handoff_status", "parse_callback",
           "process_handoff_receipt", "redact_callback"]
