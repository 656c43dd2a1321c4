"""The SLA history in the store (table ``sla_event``) and the per-schedule-window run key.

Rows are only ever inserted. Each row has a unique ``event_key``:

- ``claim:<window>:<decision key>`` -- a scheduler's claim on one planned send in one schedule
  window, taken *before* delivering: of two schedulers running the same window only the one whose
  insert wins sends (the other sees the unique key and skips). A claim whose sender died is not
  retried in the same window; the next window plans and claims it again (at-least-once, as
  Alertmanager's notification log);
- ``ok:<decision key>`` / ``fail:<decision key>`` -- the outcome (the decision key includes the
  attempt number, so each attempt is recorded once);
- ``ack:<acknowledgement id>``, ``refused:<hash>``, ``silence:<id>``, ``expire:<id>``.

Outcomes, acknowledgements and silences are written in one transaction with their evidence
records (:func:`ringward.store.evidence.repo.append_locked`), so a decision and its evidence are
never apart. A decision that came through the signed acknowledgement webhook is written in the same
transaction as its receipt in ``webhook_receipt`` (the inventory receiver's replay store: unique
``(source, webhook-id)``, sources ``sla:<name>``, status ``ingested`` or ``rejected`` at once, so
the inventory recovery never picks them up).

The run key (``kv_state`` namespace ``sla-run``, key ``<scope>@<window start>``) is taken by
compare-and-swap (``expected_version=0``): a second scheduler -- or a re-run -- of the same window
finds it taken and does nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.core.sla.history import (
    EVENT_ADAPTER,
    Acknowledged,
    AckRefused,
    HistoryEvent,
    SendFailed,
    SentOk,
    SilenceAdded,
    SilenceExpired,
)
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.inventory.receipts import WebhookReceiptRepository, WebhookReplayError
from ringward.store.state_repo import StateRepository
from ringward.store.tables import sla_event_table as ev_t
from ringward.store.tables import webhook_receipt_table as wr_t

RUN_NAMESPACE = "sla-run"
#: the ``webhook_receipt.provider`` of signed SLA acknowledgements
RECEIPT_PROVIDER = "sla-ack"
MAX_PAGE = 500


@dataclass(frozen=True)
class WebhookReceiptRow:
    """A signed acknowledgement's receipt: written with its decision (or refusal), never open."""

    source: str
    webhook_id: str
    body_sha256: str
    body_bytes: int
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class LedgerRow:
    id: int
    scope: str
    kind: str
    group_key: str | None
    at: datetime
    recorded_at: datetime
    evidence_id: int | None
    event: HistoryEvent


def _like(name: str, value: str) -> str:
    """A LIKE pattern (escape ``\\``) for ``"<name>":<json value>`` inside a canonical JSON document."""
    text = dumps_canonical({name: value}).decode("utf-8")[1:-1]
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def event_key(event: HistoryEvent) -> str:
    if isinstance(event, SentOk):
        return f"ok:{event.key}"
    if isinstance(event, SendFailed):
        return f"fail:{event.key}"
    if isinstance(event, Acknowledged):
        return f"ack:{event.acknowledgement_id}"
    if isinstance(event, SilenceAdded):
        return f"silence:{event.silence_id}"
    if isinstance(event, SilenceExpired):
        return f"expire:{event.silence_id}:{event.at.isoformat()}"
    assert isinstance(event, AckRefused)
    digest = hashlib.sha256(f"{event.group_key}|{event.by}|{event.state}|{event.at.isoformat()}".encode()).hexdigest()
    return f"refused:{digest[:32]}"


def _group_of(event: HistoryEvent) -> str | None:
    return getattr(event, "group_key", None)


def _evidence_id(i: int, records: Sequence[EvidenceRecord], given: Sequence[int | None] | None) -> int | None:
    if given is not None and i < len(given) and given[i] is not None:
        return given[i]
    return records[i].id if i < len(records) else None


class SlaLedger:
    def __init__(self, store: Transactions) -> None:
        self._store = store

    # --- reading ---------------------------------------------------------------------------------

    def history(self, scope: str) -> tuple[HistoryEvent, ...]:
        """Every event of ``scope`` in insertion order (claims left out)."""
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(ev_t.c.document).where(ev_t.c.scope == scope, ev_t.c.kind != "claim").order_by(ev_t.c.id)
            ).all()
        return tuple(
            EVENT_ADAPTER.validate_python(loads_strict(r.document.encode("utf-8"), source="sla_event")) for r in rows
        )

    def page(
        self,
        *,
        scopes: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        group_key: str | None = None,
        receiver: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[LedgerRow], int]:
        """Events newest first (by insertion, i.e. time order), claims left out, and the exact
        number matching. Every filter is SQL (``receiver`` / ``actor`` match the canonical JSON
        document); no fixed cap on how far back a page may reach."""
        conditions: list[sa.ColumnElement[bool]] = [ev_t.c.kind != "claim"]
        if scopes:
            conditions.append(ev_t.c.scope.in_(list(scopes)))
        if kinds:
            conditions.append(ev_t.c.kind.in_(list(kinds)))
        if group_key is not None:
            conditions.append(ev_t.c.group_key == group_key)
        if receiver is not None:
            conditions.append(ev_t.c.document.like(_like("receiver", receiver), escape="\\"))
        if actor is not None:
            conditions.append(
                sa.or_(
                    ev_t.c.document.like(_like("by", actor), escape="\\"),
                    ev_t.c.document.like(_like("created_by", actor), escape="\\"),
                )
            )
        if since is not None:
            conditions.append(ev_t.c.at >= since.astimezone(UTC))
        if until is not None:
            conditions.append(ev_t.c.at < until.astimezone(UTC))
        where = sa.and_(*conditions)
        query = sa.select(ev_t).where(where)
        if before_id is not None:
            query = query.where(ev_t.c.id < before_id)
        query = query.order_by(ev_t.c.id.desc()).limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset))
        with self._store.reading() as conn:
            rows = conn.execute(query).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(ev_t).where(where)).scalar_one()
        out = [
            LedgerRow(
                id=int(r.id),
                scope=r.scope,
                kind=r.kind,
                group_key=r.group_key,
                at=r.at,
                recorded_at=r.recorded_at,
                evidence_id=r.evidence_id,
                event=EVENT_ADAPTER.validate_python(loads_strict(r.document.encode("utf-8"), source="sla_event")),
            )
            for r in rows
        ]
        return out, int(total)

    def claims(self, scope: str) -> list[str]:
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(ev_t.c.event_key).where(ev_t.c.scope == scope, ev_t.c.kind == "claim").order_by(ev_t.c.id)
            ).all()
        return [r.event_key for r in rows]

    # --- writing ---------------------------------------------------------------------------------

    def claim_window(self, scope: str, window_start: datetime, *, run_id: str, now: datetime) -> bool:
        """Take the run key of ``scope``'s schedule window (CAS); False when another run holds it."""
        key = f"{scope}@{window_start.astimezone(UTC).isoformat()}"
        try:
            StateRepository(self._store).put(
                RUN_NAMESPACE, key, {"run_id": run_id}, actor=run_id, now=now, expected_version=0
            )
        except StoreConflictError:
            return False
        return True

    def window_holder(self, scope: str, window_start: datetime) -> str | None:
        entry = StateRepository(self._store).get(RUN_NAMESPACE, f"{scope}@{window_start.astimezone(UTC).isoformat()}")
        return None if entry is None else str(entry.value.get("run_id"))

    def claim_send(
        self, scope: str, window: str, decision_key: str, *, group_key: str, at: datetime, now: datetime
    ) -> bool:
        """Claim one planned send for this window; False when it is already claimed."""
        document = dumps_canonical({"kind": "claim", "key": decision_key, "window": window}).decode("utf-8")
        try:
            with self._store.writing() as conn:
                conn.execute(
                    sa.insert(ev_t).values(
                        scope=scope,
                        event_key=f"claim:{window}:{decision_key}",
                        kind="claim",
                        group_key=group_key,
                        at=at,
                        recorded_at=now,
                        evidence_id=None,
                        document=document,
                    )
                )
        except IntegrityError:
            return False
        return True

    def record(
        self,
        scope: str,
        events: Sequence[HistoryEvent],
        drafts: Sequence[EvidenceDraft] = (),
        *,
        now: datetime,
        evidence_ids: Sequence[int | None] | None = None,
        receipt: WebhookReceiptRow | None = None,
    ) -> list[EvidenceRecord]:
        """Append ``events`` and their evidence in one transaction; the i-th draft documents the
        i-th event when both are given (``drafts`` may be longer: plan-level records). Events whose
        evidence already exists (a connector delivery record) name it in ``evidence_ids``. With
        ``receipt`` (a signed webhook's), its row is inserted in the same transaction, pointing at
        the first draft's record.

        Raises:
            WebhookReplayError: the receipt's ``(source, webhook-id)`` is already recorded.
            StoreConflictError: one of the events is already recorded (nothing is written).
        """
        try:
            with self._store.writing() as conn:
                records = append_locked(conn, list(drafts), now) if drafts else []
                if receipt is not None:
                    when = now.astimezone(UTC)
                    evidence = records[0].id if records else None
                    conn.execute(
                        sa.insert(wr_t).values(
                            source=receipt.source,
                            webhook_id=receipt.webhook_id,
                            provider=RECEIPT_PROVIDER,
                            channel=None,
                            received_at=when,
                            body_sha256=receipt.body_sha256,
                            body_bytes=receipt.body_bytes,
                            raw_path=f"evidence-record:{evidence}",
                            status=receipt.status,
                            reason=None if receipt.reason is None else receipt.reason[:1000],
                            evidence_id=evidence,
                            inventory_id=None,
                            updated_at=when,
                        )
                    )
                for i, event in enumerate(events):
                    conn.execute(
                        sa.insert(ev_t).values(
                            scope=scope,
                            event_key=event_key(event),
                            kind=event.kind,
                            group_key=_group_of(event),
                            at=event.at,
                            recorded_at=now,
                            evidence_id=_evidence_id(i, records, evidence_ids),
                            document=dumps_canonical(event.model_dump(mode="json")).decode("utf-8"),
                        )
                    )
        except IntegrityError as exc:
            if receipt is not None and WebhookReceiptRepository(self._store).seen(receipt.source, receipt.webhook_id):
                raise WebhookReplayError(
                    f"webhook-id {receipt.webhook_id[:80]!r} was already accepted for source {receipt.source}"
                ) from exc
            raise StoreConflictError(f"sla history: an event of {scope} is already recorded; nothing written") from exc
        return records
