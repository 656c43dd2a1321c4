"""Signed inventory webhook receipts (table ``webhook_receipt``).

A receipt is written in the same transaction as the evidence record of the raw body it points at,
so "accepted" (202) always means "body and digest are evidence". The unique ``(source,
webhook_id)`` refuses a replay even when two deliveries of one message race; statuses only move
forward from ``received`` (or ``dispatched``), so two ingesters of one receipt record one outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ringward.core.errors import ExecutionReplayError, NotFoundError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.tables import webhook_receipt_table as wr_t

RECEIVED = "received"
DISPATCHED = "dispatched"
INGESTED = "ingested"
REJECTED = "rejected"
STATUSES = (RECEIVED, DISPATCHED, INGESTED, REJECTED)
#: statuses an ingester may still finish from
OPEN_STATUSES = (RECEIVED, DISPATCHED)
MAX_REASON = 1000


class WebhookReplayError(ExecutionReplayError):
    """This ``webhook-id`` was already accepted for this source."""

    code = "webhook-replayed"


@dataclass(frozen=True)
class WebhookReceipt:
    receipt_id: int
    source: str
    webhook_id: str
    provider: str
    channel: str | None
    received_at: datetime
    body_sha256: str
    body_bytes: int
    raw_path: str
    status: str
    reason: str | None
    evidence_id: int | None
    inventory_id: str | None

    def document(self) -> dict[str, object]:
        return {
            "receipt_id": self.receipt_id, "source": self.source, "webhook_id": self.webhook_id,
            "provider": self.provider, "channel": self.channel,
            "received_at": self.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "body_sha256": self.body_sha256, "body_bytes": self.body_bytes, "raw_path": self.raw_path,
            "status": self.status, "reason": self.reason,
            "evidence_id": None if self.evidence_id is None else str(self.evidence_id),
            "inventory_id": self.inventory_id,
        }


def _receipt(row: sa.Row[tuple[object, ...]]) -> WebhookReceipt:
    m = row._mapping
    return WebhookReceipt(
        receipt_id=int(m["id"]), source=m["source"], webhook_id=m["webhook_id"], provider=m["provider"],
        channel=m["channel"], received_at=m["received_at"], body_sha256=m["body_sha256"],
        body_bytes=int(m["body_bytes"]), raw_path=m["raw_path"], status=m["status"], reason=m["reason"],
        evidence_id=None if m["evidence_id"] is None else int(m["evidence_id"]), inventory_id=m["inventory_id"],
    )


class WebhookReceiptRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store

    def seen(self, source: str, webhook_id: str) -> bool:
        """True when this message id was already accepted for ``source`` (the unique key decides races)."""
        with self._store.reading() as conn:
            row = conn.execute(sa.select(wr_t.c.id).where(wr_t.c.source == source,
                                                          wr_t.c.webhook_id == webhook_id)).first()
        return row is not None

    def accept(self, draft: EvidenceDraft, *, source: str, webhook_id: str, provider: str, channel: str | None,
               body_sha256: str, body_bytes: int, raw_path: str, now: datetime) -> tuple[WebhookReceipt,
                                                                                        EvidenceRecord]:
        """Append the raw body's evidence record and its receipt (status ``received``) in one transaction.

        Raises:
            WebhookReplayError: ``(source, webhook_id)`` was accepted before (nothing is written).
        """
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                (record,) = append_locked(conn, [draft], now)
                inserted = conn.execute(sa.insert(wr_t).values(
                    source=source, webhook_id=webhook_id, provider=provider, channel=channel, received_at=when,
                    body_sha256=body_sha256, body_bytes=body_bytes, raw_path=raw_path, status=RECEIVED,
                    reason=None, evidence_id=record.id, inventory_id=None, updated_at=when,
                ))
                key = inserted.inserted_primary_key
                assert key is not None
                receipt_id = key[0]
        except IntegrityError as exc:
            raise WebhookReplayError(f"webhook-id {webhook_id[:80]!r} was already accepted for source {source}") \
                from exc
        receipt = WebhookReceipt(receipt_id=int(receipt_id), source=source, webhook_id=webhook_id, provider=provider,
                                 channel=channel, received_at=when, body_sha256=body_sha256, body_bytes=body_bytes,
                                 raw_path=raw_path, status=RECEIVED, reason=None, evidence_id=record.id,
                                 inventory_id=None)
        return receipt, record

    def get(self, receipt_id: int) -> WebhookReceipt:
        with self._store.reading() as conn:
            row = conn.execute(sa.select(wr_t).where(wr_t.c.id == receipt_id)).first()
        if row is None:
            raise NotFoundError(f"webhook receipt {receipt_id}: not found")
        return _receipt(row)

    def open_receipts(self, statuses: Sequence[str] = (RECEIVED,), *, limit: int = 1000) -> list[WebhookReceipt]:
        """Receipts still waiting for an outcome, oldest first."""
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(wr_t).where(wr_t.c.status.in_(list(statuses)))
                                .order_by(wr_t.c.id).limit(limit)).all()
        return [_receipt(r) for r in rows]

    def finish(self, receipt_id: int, status: str, *, now: datetime, reason: str | None = None,
               inventory_id: str | None = None, allowed_from: Sequence[str] = OPEN_STATUSES) -> bool:
        """Move a receipt to ``status`` if it is still in ``allowed_from``; False when someone else did first."""
        if status not in STATUSES:
            raise ValueError(f"unknown receipt status {status!r}")
        values: dict[str, object] = {"status": status, "updated_at": now.astimezone(UTC)}
        if reason is not None:
            values["reason"] = reason[:MAX_REASON]
        if inventory_id is not None:
            values["inventory_id"] = inventory_id
        with self._store.writing() as conn:
            changed = conn.execute(sa.update(wr_t).where(wr_t.c.id == receipt_id,
                                                         wr_t.c.status.in_(list(allowed_from))).values(**values))
        return bool(changed.rowcount)
