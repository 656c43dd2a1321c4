"""Signed inventory webhooks: configuration, intake, ingestion of receipts, crash recovery.

The receiver configuration is its own file, ``$RINGWARD_WEBHOOKS`` or ``<RINGWARD_HOME>/webhooks.yaml``
(the connectors' ``webhooks:`` section describes *outgoing* deliveries and stays theirs)::

    schema_version: ringward.inventory-webhooks.v1
    max_body_bytes: 16777216        # 413 above this (read while streaming, never buffered past it)
    tolerance_seconds: 300          # webhook-timestamp must be within ±5 minutes of the server clock
    output_root: /srv/ringward/endpoint-inventory/webhooks   # default <home>/endpoint-inventory/webhooks
    sources:
      jamf-prod:                    # POST /webhooks/inventory/jamf-prod
        provider: jamf              # jamf | intune | fleet | linux | edr
        channel: stable             # optional: the release channel these endpoints follow
        software: [cavra-runtime]   # optional: the runtime's name as the provider lists it
        secrets:                    # HMAC (v1) secrets, whsec_<base64>: two while rotating
          - env:JAMF_WEBHOOK_SECRET
          - file:/etc/ringward/jamf-webhook.previous
        public_keys:                # Ed25519 (v1a) keys pinned as whpk_<base64>, literal or referenced
          - whpk_...

Secrets are references only (``env:NAME`` or ``file:PATH``), resolved once when the API starts;
neither they nor their values reach logs, evidence or errors (errors name the reference).

Intake order (:func:`accept_webhook`): the body is already capped by the caller (413); the
signature and timestamp are verified (401); a ``webhook-id`` already accepted for the source is a
replay (409); refusals are evidence records without the body. Refusals at a configured source are
recorded although the sender is unauthenticated (they are the trail of an attack on that source):
each record is small and bounded (no body, truncated id and reason), so growth is bounded by the
request rate only -- rate-limit ``/webhooks/inventory/`` at the reverse proxy. Unknown sources are
not recorded (anyone can guess names). An accepted body is written as an
evidence bundle (raw bytes + digest) and its receipt row is inserted in the same transaction
before the 202 is sent. Then the API (``ringward.api.webhooks``) either emits ``ringward.inventory.received``
(a deployment trigger runs the ingestion flow on the receipt id) or, without a
Prefect API, ingests in-process (:func:`ingest_receipt`); events are sent by the API layer.
``ringward inventory recover-webhooks`` re-ingests receipts a crash left ``received``; ingestion is
content-addressed, so re-ingesting a body is never a second ingestion record. The same intake
(:func:`verify_signed`, :func:`store_signed_body`, :func:`record_refusal`) serves the signed
remediation handoff statuses (``handoff_status:`` senders, receipts ``handoff-status:<sender>``,
:mod:`ringward.operations.remediation.handoff_webhook`); recovery records those too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ringward.core.delivery.webhook_keys import NO_KEYS, PublicKeyRefs, SecretRefs
from ringward.core.delivery.webhook_signing import DEFAULT_TOLERANCE_SECONDS, VerifiedWebhook, verify_webhook
from ringward.core.errors import ConfigError, InputError, NotFoundError, RingwardError
from ringward.core.evidence.records import EvidenceRecord, EvidenceSubject
from ringward.operations.common.config_files import KeyOwners, parse_yaml_model, resolve_signing_keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ringward.store import Store
    from ringward.store.inventory.receipts import WebhookReceipt

CONFIG_SCHEMA = "ringward.inventory-webhooks.v1"
WEBHOOKS_ENV = "RINGWARD_WEBHOOKS"
#: evidence kind of receipts and refusals (the ingestion itself is ``endpoint-inventory-ingestion``)
KIND_WEBHOOK = "endpoint-inventory-webhook"
RECEIVED_EVENT = "ringward.inventory.received"
RAW_BODY_FILE = "webhook-body.json"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: the ingestion reads payloads up to 512 MiB; a webhook body is never allowed past that
MAX_BODY_BYTES_LIMIT = 512 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_WEBHOOK_ID = 256
#: the Standard Webhooks headers; each must appear once (see ``ringward.api.webhooks``)
SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: handoff-status senders: shorter than sources, their receipts are kept as ``handoff-status:<name>``
SENDER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
HANDOFF_RECEIPT_PREFIX = "handoff-status:"
#: the receipt ``provider`` of a handoff-status delivery (never an inventory provider)
HANDOFF_RECEIPT_PROVIDER = "handoff-status"
DEFAULT_HANDOFF_MAX_BODY_BYTES = 64 * 1024


def webhooks_path() -> Path:
    """``$RINGWARD_WEBHOOKS`` or ``<RINGWARD_HOME>/webhooks.yaml`` (absent: no source is accepted)."""
    from ringward.settings import ringward_home

    value = os.environ.get(WEBHOOKS_ENV, "").strip()
    return Path(value).expanduser().absolute() if value else ringward_home().absolute() / "webhooks.yaml"


class WebhookSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["jamf", "intune", "fleet", "linux", "edr"]
    channel: str | None = Field(default=None, max_length=128)
    software: tuple[str, ...] = Field(default=("cavra-runtime",), min_length=1, max_length=16)
    secrets: SecretRefs = ()
    public_keys: PublicKeyRefs = ()

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None:
            from ringward.core.promotion.channels import check_channel_name

            try:
                check_channel_name(value)
            except InputError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _some_key(self) -> WebhookSourceConfig:
        if not self.secrets and not self.public_keys:
            raise ValueError(NO_KEYS)
        return self


class HandoffSenderConfig(BaseModel):
    """A system allowed to post remediation handoff statuses (``POST /webhooks/handoff-status``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the handoff providers whose work items this sender may update (empty: any)
    providers: tuple[Literal["jira", "servicenow", "slack", "teams", "private_queue", "webhook"], ...] = Field(
        default=(), max_length=6)
    secrets: SecretRefs = ()
    public_keys: PublicKeyRefs = ()

    @model_validator(mode="after")
    def _some_key(self) -> HandoffSenderConfig:
        if not self.secrets and not self.public_keys:
            raise ValueError(NO_KEYS)
        return self


class HandoffStatusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=DEFAULT_HANDOFF_MAX_BODY_BYTES, ge=1024, le=1024 * 1024)
    senders: dict[str, HandoffSenderConfig] = Field(default_factory=dict)

    @field_validator("senders")
    @classmethod
    def _names(cls, value: dict[str, HandoffSenderConfig]) -> dict[str, HandoffSenderConfig]:
        for name in value:
            if not re.fullmatch(SENDER_PATTERN, name):
                raise ValueError(f"sender name {name[:80]!r}: expected lowercase letters, digits, - or _ (1-48)")
        return value


class WebhooksConfig(BaseModel):
    """The file's model (the single source of its format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.inventory-webhooks.v1"] = "ringward.inventory-webhooks.v1"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=MAX_BODY_BYTES_LIMIT)
    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE_SECONDS, ge=1, le=3600)
    output_root: str | None = Field(default=None, max_length=4096)
    sources: dict[str, WebhookSourceConfig] = Field(default_factory=dict)
    #: senders of remediation handoff statuses (``POST /webhooks/handoff-status``); none: the route answers 404
    handoff_status: HandoffStatusConfig | None = None

    @field_validator("sources")
    @classmethod
    def _names(cls, value: dict[str, WebhookSourceConfig]) -> dict[str, WebhookSourceConfig]:
        for name in value:
            if not re.fullmatch(SOURCE_PATTERN, name):  # re.match's '$' also matches before a final newline
                raise ValueError(f"source name {name[:80]!r}: expected lowercase letters, digits, - or _ (1-64)")
        return value


@dataclass(frozen=True)
class WebhookSource:
    """A configured source with its secrets resolved (never printed: ``repr=False``)."""

    name: str
    provider: str
    channel: str | None
    software: tuple[str, ...]
    secrets: tuple[str, ...] = field(repr=False)
    public_keys: tuple[Ed25519PublicKey, ...] = field(repr=False)


@dataclass(frozen=True)
class HandoffSender:
    """A configured handoff-status sender with its secrets resolved (never printed)."""

    name: str
    providers: tuple[str, ...]
    secrets: tuple[str, ...] = field(repr=False)
    public_keys: tuple[Ed25519PublicKey, ...] = field(repr=False)


@dataclass(frozen=True)
class WebhookReceiver:
    """What the API needs at runtime: limits, output root and the resolved sources."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    output_root: Path | None = None
    sources: Mapping[str, WebhookSource] = field(default_factory=dict)
    path: Path | None = None
    handoff_senders: Mapping[str, HandoffSender] = field(default_factory=dict)
    handoff_max_body_bytes: int = DEFAULT_HANDOFF_MAX_BODY_BYTES

    def source(self, name: str) -> WebhookSource:
        found = self.sources.get(name)
        if found is None:
            raise NotFoundError(f"webhook source {name[:64]!r} is not configured")
        return found

    def outputs(self) -> Path:
        from ringward.settings import ringward_home

        return self.output_root or ringward_home().absolute() / "endpoint-inventory" / "webhooks"


def resolve_config(config: WebhooksConfig, *, source: str, environ: Mapping[str, str] | None = None,
                   base: Path | None = None) -> WebhookReceiver:
    """Resolve every reference and parse every key now, so a bad secret fails at startup, not per request.

    Raises:
        ConfigError: ``<file>: sources.<name>.<field>[i]: <problem>`` (the reference, never a value).
    """
    env = os.environ if environ is None else environ
    resolved: dict[str, WebhookSource] = {}
    # a message signed for one source must not verify at another (the replay key is per source)
    owners = KeyOwners("the signature does not cover the source, so each needs its own {}")

    def keys_of(section: str, name: str, item: WebhookSourceConfig | HandoffSenderConfig
                ) -> tuple[tuple[str, ...], tuple[Ed25519PublicKey, ...]]:
        label = name if section == "sources" else f"{section}.{name}"
        return resolve_signing_keys(item.secrets, item.public_keys, where=f"{source}: {section}.{name}",
                                    owner=f"source {label}", owners=owners, environ=env,
                                    claim_after_resolving=True)

    for name, item in config.sources.items():
        secrets, keys = keys_of("sources", name, item)
        resolved[name] = WebhookSource(name=name, provider=item.provider, channel=item.channel,
                                       software=item.software, secrets=secrets, public_keys=keys)
    senders: dict[str, HandoffSender] = {}
    handoff = config.handoff_status
    for name, sender in (handoff.senders.items() if handoff else ()):
        secrets, keys = keys_of("handoff_status.senders", name, sender)
        senders[name] = HandoffSender(name=name, providers=tuple(sender.providers), secrets=secrets,
                                      public_keys=keys)
    output = None
    if config.output_root:
        output = Path(config.output_root).expanduser()
        if not output.is_absolute():
            output = (base or Path.cwd()).absolute() / output
    return WebhookReceiver(max_body_bytes=config.max_body_bytes, tolerance_seconds=config.tolerance_seconds,
                           output_root=output, sources=resolved, handoff_senders=senders,
                           handoff_max_body_bytes=handoff.max_body_bytes if handoff else DEFAULT_HANDOFF_MAX_BODY_BYTES)


def parse_config(data: bytes, *, source: str) -> WebhooksConfig:
    """Parse ``webhooks.yaml`` (YAML or JSON).

    Raises:
        ConfigError: one line naming the file and field.
    """
    return parse_yaml_model(data, WebhooksConfig, source=source, max_bytes=MAX_CONFIG_BYTES)


def load_receiver(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> WebhookReceiver:
    """The receiver from ``path`` (default :func:`webhooks_path`); an absent file accepts no source."""
    target = path or webhooks_path()
    if not target.exists():
        return WebhookReceiver(path=target)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read ({type(exc).__name__})") from None
    receiver = resolve_config(parse_config(data, source=str(target)), source=str(target), environ=environ,
                              base=target.parent)
    return dataclasses.replace(receiver, path=target)


# --- intake ----------------------------------------------------------------------------------------


def _actor(source: str) -> str:
    return f"webhook:{source}"


def record_refusal(store: Store, *, source: str, provider: str | None, status_code: int, error: str, reason: str,
                   webhook_id: str | None, body_sha256: str | None, body_bytes: int, now: datetime,
                   kind: str = KIND_WEBHOOK) -> EvidenceRecord:
    """Evidence of a refused delivery, without its body (an attacker's bytes are not kept)."""
    from ringward.core.evidence.records import EvidenceDraft

    payload = {
        "schema_version": "ringward.refusal.v1",
        "metadata_kind": kind,
        "refused": True,
        "error": {"code": error, "http_status": status_code, "message": reason[:500]},
        "source": source,
        "webhook_id": None if webhook_id is None else webhook_id[:MAX_WEBHOOK_ID],
        "body_sha256": body_sha256,
        "body_bytes": body_bytes,
    }
    draft = EvidenceDraft(kind=kind, actor=_actor(source), payload=payload,
                          subject=EvidenceSubject(provider=provider, status="refused", success=False))
    return store.append(draft, now=now)


@dataclass(frozen=True)
class Accepted:
    receipt: WebhookReceipt
    evidence: EvidenceRecord
    verified: VerifiedWebhook


@dataclass(frozen=True)
class Signer:
    """Who may sign a delivery: a name and its pinned secrets / public keys."""

    name: str
    secrets: tuple[str, ...] = field(repr=False)
    public_keys: tuple[Ed25519PublicKey, ...] = field(repr=False)


def verify_signed(headers: Mapping[str, str], body: bytes, signers: Sequence[Signer], *, now: datetime,
                  tolerance_seconds: int) -> tuple[Signer, VerifiedWebhook]:
    """The first signer whose secrets or keys verify the Standard Webhooks signature.

    Raises:
        WebhookSignatureError: a header is missing or malformed, the timestamp is stale or in the
            future, or no signer verifies (the message names no secret).
    """
    from ringward.core.errors import WebhookSignatureError

    lowered = {k.lower(): v for k, v in headers.items()}
    claimed_id = lowered.get("webhook-id")
    if claimed_id is not None and not 0 < len(claimed_id) <= MAX_WEBHOOK_ID:
        raise WebhookSignatureError(f"webhook-id: expected 1-{MAX_WEBHOOK_ID} characters, found {len(claimed_id)}")
    if not signers:
        raise WebhookSignatureError("no signer is configured")
    first: WebhookSignatureError | None = None
    for signer in signers:
        try:
            verified = verify_webhook(dict(lowered), body, now=int(now.timestamp()), secrets=signer.secrets,
                                      public_keys=signer.public_keys, tolerance_seconds=tolerance_seconds)
        except WebhookSignatureError as exc:
            first = first or exc
            continue
        return signer, verified
    assert first is not None
    raise first


def store_signed_body(store: Store, *, kind: str, receipt_source: str, refusal_source: str, actor: str,
                      provider: str, channel: str | None, verified: VerifiedWebhook, body: bytes,
                      payload: dict[str, Any], now: datetime) -> Accepted:
    """Refuse a replayed ``webhook-id`` for ``receipt_source`` (recorded), else keep the body as an
    evidence bundle and insert its receipt in the same transaction.

    Raises:
        WebhookReplayError: the id was accepted before for this receipt source (recorded).
    """
    import shutil

    from ringward.operations.inventory.common import write_bundle
    from ringward.store.inventory.receipts import WebhookReceiptRepository, WebhookReplayError

    digest = hashlib.sha256(body).hexdigest()
    repo = WebhookReceiptRepository(store)

    def replay(exc: WebhookReplayError) -> WebhookReplayError:
        record_refusal(store, source=refusal_source, provider=provider, status_code=409, error=exc.code,
                       reason=exc.message, webhook_id=verified.msg_id, body_sha256=digest, body_bytes=len(body),
                       now=now, kind=kind)
        return exc

    if repo.seen(receipt_source, verified.msg_id):
        raise replay(WebhookReplayError(f"webhook-id {verified.msg_id[:80]!r} was already accepted for source "
                                        f"{receipt_source}"))
    document = {
        **payload,
        "metadata_kind": kind,
        "webhook_id": verified.msg_id,
        "webhook_timestamp": verified.timestamp,
        "signature_version": verified.version,
        "body_sha256": digest,
        "body_bytes": len(body),
        "body_file": RAW_BODY_FILE,
    }
    draft, bundle = write_bundle(kind, actor=actor, payload=document, files={RAW_BODY_FILE: body},
                                 subject=EvidenceSubject(provider=provider, channel=channel, status="received",
                                                         success=True),
                                 flow_run_id=None, now=now)
    try:
        receipt, record = repo.accept(draft, source=receipt_source, webhook_id=verified.msg_id, provider=provider,
                                      channel=channel, body_sha256=digest, body_bytes=len(body),
                                      raw_path=str((bundle / RAW_BODY_FILE).absolute()), now=now)
    except WebhookReplayError as exc:  # a concurrent delivery of the same id won the unique key
        shutil.rmtree(bundle, ignore_errors=True)
        raise replay(exc) from None
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    return Accepted(receipt=receipt, evidence=record, verified=verified)


def accept_webhook(store: Store, receiver: WebhookReceiver, source: str, headers: Mapping[str, str], body: bytes,
                   *, now: datetime) -> Accepted:
    """Verify, refuse replays, then keep the body as evidence with its receipt (see the module docstring).

    Raises:
        NotFoundError: unknown source (not recorded: anyone can guess names).
        WebhookSignatureError: missing header, bad signature, stale or future timestamp (recorded).
        WebhookReplayError: the ``webhook-id`` was accepted before for this source (recorded).
    """
    from ringward.core.errors import WebhookSignatureError

    config = receiver.source(source)
    try:
        _, verified = verify_signed(headers, body, [Signer(source, config.secrets, config.public_keys)], now=now,
                                    tolerance_seconds=receiver.tolerance_seconds)
    except WebhookSignatureError as exc:
        claimed_id = {k.lower(): v for k, v in headers.items()}.get("webhook-id")
        record_refusal(store, source=source, provider=config.provider, status_code=401, error=exc.code,
                       reason=exc.message, webhook_id=claimed_id, body_sha256=hashlib.sha256(body).hexdigest(),
                       body_bytes=len(body), now=now)
        raise
    payload = {
        "schema_version": "ringward.inventory-webhook-receipt.v1",
        "source": source,
        "provider": config.provider,
        "channel": config.channel,
    }
    return store_signed_body(store, kind=KIND_WEBHOOK, receipt_source=source, refusal_source=source,
                             actor=_actor(source), provider=config.provider, channel=config.channel,
                             verified=verified, body=body, payload=payload, now=now)


# --- after the 202 ---------------------------------------------------------------------------------


def output_dir(receiver: WebhookReceiver, receipt: WebhookReceipt) -> Path:
    """Where a receipt's observations are written (one directory per receipt)."""
    return receiver.outputs() / receipt.source / f"receipt-{receipt.receipt_id}"


def received_event(receipt: WebhookReceipt,
                   software: tuple[str, ...] = ("cavra-runtime",)) -> tuple[str, str, dict[str, Any]]:
    """``ringward.inventory.received``: the ``inventory-ingest-on-receive`` trigger takes only
    ``receipt_id``; the ingestion reads path, provider, channel and output from the stored receipt
    (:func:`ingest_receipt_by_id`). The other fields describe the delivery for people and filters.
    ``receipt_id`` is a JSON number: the trigger renders it into the flow's integer parameter as is."""
    return (RECEIVED_EVENT, f"ringward.inventory.webhook.{receipt.source}",
            {"receipt_id": int(receipt.receipt_id), "webhook_source": receipt.source,
             "provider": receipt.provider, "channel": receipt.channel, "software": list(software),
             "body_sha256": receipt.body_sha256,
             "evidence_id": None if receipt.evidence_id is None else str(receipt.evidence_id)})


def check_stored_body(receipt: WebhookReceipt) -> None:
    """The stored body must still be the bytes that were accepted: a missing or altered file is
    broken evidence (the receipt stays open), never a malformed payload to reject."""
    from ringward.core.errors import EvidenceIntegrityError
    from ringward.operations.common.files import sha256_file
    from ringward.settings import evidence_root

    path = Path(receipt.raw_path)
    # the row names the file: a row edited (or restored from elsewhere) must not make the
    # ingestion read, and turn into evidence, a file outside the evidence root
    if not path.resolve().is_relative_to(evidence_root().resolve()):
        raise EvidenceIntegrityError(f"webhook receipt {receipt.receipt_id}: stored body {path} is outside the "
                                     f"evidence root {evidence_root()}")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise EvidenceIntegrityError(f"webhook receipt {receipt.receipt_id}: stored body {path} cannot be read "
                                     f"({type(exc).__name__}: file not found or unreadable)") from None
    if digest != receipt.body_sha256:
        raise EvidenceIntegrityError(f"webhook receipt {receipt.receipt_id}: stored body {path} has sha256 "
                                     f"{digest}, expected {receipt.body_sha256}")


def ingest_receipt(store: Store, receiver: WebhookReceiver, receipt: WebhookReceipt, *, now: datetime,
                   software: tuple[str, ...] | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
    """Ingest a receipt's stored body (re-hashed first) and record the outcome on the receipt.

    A malformed payload is not an error here: the receipt becomes ``rejected`` with the one-line
    reason (the ingestion already kept the raw payload and the refusal as evidence).

    Raises:
        EvidenceIntegrityError: the stored body is gone or no longer has the accepted digest.
    """
    from ringward.operations.inventory.ingest import DEFAULT_SOFTWARE, ingest_inventory
    from ringward.store.inventory.receipts import INGESTED, REJECTED, WebhookReceiptRepository

    repo = WebhookReceiptRepository(store)
    check_stored_body(receipt)
    configured = receiver.sources.get(receipt.source)
    chosen = software or (configured.software if configured else DEFAULT_SOFTWARE)
    try:
        result = ingest_inventory(store, source=Path(receipt.raw_path), provider=receipt.provider,
                                  channel=receipt.channel, software=chosen, output=output_dir(receiver, receipt),
                                  actor=_actor(receipt.source), now=now, flow_run_id=flow_run_id)
    except InputError as exc:
        changed = repo.finish(receipt.receipt_id, REJECTED, reason=exc.message, now=now)
        return {"receipt_id": receipt.receipt_id, "status": REJECTED, "reason": exc.message, "changed": changed}
    changed = repo.finish(receipt.receipt_id, INGESTED, inventory_id=result["inventory_id"], now=now)
    return {"receipt_id": receipt.receipt_id, "status": INGESTED, "ingestion": result["status"],
            "inventory_id": result["inventory_id"], "changed": changed, "result": result}


def ingest_receipt_by_id(store: Store, receipt_id: int, *, now: datetime,
                         flow_run_id: str | None = None) -> dict[str, Any]:
    """The ``inventory-ingest-on-receive`` step: everything (stored body path, provider, channel,
    output, actor) comes from the receipt the API recorded, never from the event that named it, so
    whoever can post events to Prefect can at most ask for an accepted body to be ingested (once:
    a finished receipt is not ingested again)."""
    from ringward.store.inventory.receipts import OPEN_STATUSES, WebhookReceiptRepository

    receipt = WebhookReceiptRepository(store).get(receipt_id)
    if receipt.provider == HANDOFF_RECEIPT_PROVIDER:  # a handoff status, never an inventory body
        return {"receipt_id": receipt.receipt_id, "status": receipt.status, "inventory_id": None, "changed": False,
                "reason": "not an inventory receipt (a handoff status; recorded by its own route)",
                "already_finished": True}
    if receipt.status not in OPEN_STATUSES:
        return {"receipt_id": receipt.receipt_id, "status": receipt.status, "reason": receipt.reason,
                "inventory_id": receipt.inventory_id, "changed": False, "already_finished": True}
    return ingest_receipt(store, load_receiver(), receipt, now=now, flow_run_id=flow_run_id)


def recover_webhooks(store: Store, receiver: WebhookReceiver, *, now: datetime, include_dispatched: bool = False,
                     limit: int = 1000) -> dict[str, Any]:
    """Re-ingest receipts a crash left ``received`` (and, on request, ``dispatched`` ones whose flow
    run never finished them) from their stored raw body. Running it again is a no-op."""
    from ringward.store.inventory.receipts import DISPATCHED, RECEIVED, WebhookReceiptRepository

    statuses = (RECEIVED, DISPATCHED) if include_dispatched else (RECEIVED,)
    outcomes: list[dict[str, Any]] = []
    for receipt in WebhookReceiptRepository(store).open_receipts(statuses, limit=limit):
        try:
            if receipt.provider == HANDOFF_RECEIPT_PROVIDER:
                from ringward.operations.remediation.handoff_webhook import process_handoff_receipt

                recorded = process_handoff_receipt(store, receiver, receipt, now=now)
                outcome = {"receipt_id": receipt.receipt_id, "kind": "handoff-status",
                           "status": {"recorded": "ingested", "rejected": "rejected"}.get(recorded["status"], "error"),
                           "reason": recorded.get("message"), "status_id": recorded.get("status_id")}
            else:
                outcome = ingest_receipt(store, receiver, receipt, now=now)
        except RingwardError as exc:  # e.g. the stored body's bundle is gone: report, keep going
            outcome = {"receipt_id": receipt.receipt_id, "status": "error", "reason": exc.message}
        outcome.pop("result", None)
        outcomes.append(outcome)
    counts = {s: sum(1 for o in outcomes if o["status"] == s) for s in ("ingested", "rejected", "error")}
    return {"schema_version": "ringward.inventory-webhook-recovery.v1", "recovered": len(outcomes), **counts,
            "receipts": outcomes}


__all__ = ["Accepted", "HandoffSender", "Signer", "WebhookReceiver", "WebhookSource", "WebhooksConfig",
           "accept_webhook", "check_stored_body", "ingest_receipt", "load_receiver", "received_event",
           "record_refusal", "recover_webhooks", "store_signed_body", "verify_signed", "webhooks_path"]
