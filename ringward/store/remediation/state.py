"""Remediation state on the versioned key/value table (``kv_state``), compare-and-set, each decision
written with its evidence record(s) in **one** transaction.

Namespaces (one JSON row per key; no table of its own, so no migration):

- ``remediation.requests`` / ``<request_id>``: the signed request, its subject digest, approval id and
  approval target, ``status`` (``open`` | ``executed``), ``execution_id`` and the runs that attached;
- ``remediation.open`` / ``sha256(dedup key)``: the open request covering one (release, deployment
  target, drift class); removed when that request is executed;
- ``remediation.executions`` / ``<execution_id>``: the execution record;
- ``remediation.handoffs`` / ``<handoff_id>``: the handoff record and its per-provider delivery results;
- ``remediation.handoff-status`` / ``<handoff_id>/<provider>``: the latest status record of one work item.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ringward.core.approvals.rules import Approval, ApprovalState, transition_draft
from ringward.core.errors import RingwardError, StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.approvals import repo as approvals_repo
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked, lock_head
from ringward.store.state_repo import StateEntry, StateRepository, _entry, compare_and_set
from ringward.store.tables import approval_table as ap_t
from ringward.store.tables import kv_state_table as kv_t

REQUESTS: Final = "remediation.requests"
OPEN: Final = "remediation.open"
EXECUTIONS: Final = "remediation.executions"
HANDOFFS: Final = "remediation.handoffs"
STATUSES: Final = "remediation.handoff-status"

#: (namespace, key, value or None to delete, expected version)
Change = tuple[str, str, Any | None, int]


@dataclass(frozen=True)
class OpenOutcome:
    """What :meth:`RemediationStateRepository.open_or_attach` did."""

    request_id: str
    attached: bool
    records: tuple[EvidenceRecord, ...]


def request_is_open(state: dict[str, Any], approval: Approval | None, now: datetime) -> bool:
    """A request is open while not executed and its approval can still authorise it."""
    if state.get("status") != "open" or approval is None or approval.consumed_at is not None:
        return False
    return approval.effective_state(now) in (ApprovalState.PENDING, ApprovalState.APPROVED)


class RemediationStateRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store
        self._state = StateRepository(store)

    # --- reads ---------------------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> StateEntry | None:
        return self._state.get(namespace, key)

    def list(self, namespace: str) -> builtins.list[StateEntry]:
        return self._state.list(namespace)

    # --- decisions -----------------------------------------------------------------------------------

    def open_or_attach(
        self,
        *,
        dedup_keys: Sequence[str],
        approval: Approval,
        request_id: str,
        request_state: dict[str, Any],
        request_draft: EvidenceDraft,
        attach_draft: Callable[[str], EvidenceDraft],
        actor: str,
        now: datetime,
        flow_run_id: str | None = None,
    ) -> OpenOutcome:
        """Open a request with its approval -- or, when one open request already covers every dedup
        key, attach to it (record the run there) -- all under the evidence chain's write lock, so two
        concurrent runs cannot both open one.

        Raises:
            StoreConflictError: a row changed concurrently (re-run).
        """
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                head = lock_head(conn)
                existing = self._covering_request(conn, dedup_keys, now)
                if existing is not None:
                    entry = _read(conn, REQUESTS, existing)
                    assert entry is not None
                    value = dict(entry.value)
                    value["attached_runs"] = [*value.get("attached_runs", []),
                                              {"at": when.isoformat(), "by": actor, "request_id": request_id}]
                    compare_and_set(conn, REQUESTS, existing, value, entry.version, actor=actor, when=when)
                    records = append_locked(conn, [attach_draft(existing)], now, head=head)
                    return OpenOutcome(existing, True, tuple(records))
                conn.execute(ap_t.insert().values(**approvals_repo._row_values(approval)))
                opened = transition_draft(before=None, after=approval, event="requested", actor=approval.requester,
                                          reason=approval.note, now=now, flow_run_id=flow_run_id)
                current = _read(conn, REQUESTS, request_id)
                compare_and_set(conn, REQUESTS, request_id, request_state, 0 if current is None else current.version,
                     actor=actor, when=when)
                for key in dedup_keys:
                    row = _read(conn, OPEN, key)
                    compare_and_set(conn, OPEN, key, {"request_id": request_id}, 0 if row is None else row.version,
                         actor=actor, when=when)
                records = append_locked(conn, [opened, request_draft], now, head=head)
                return OpenOutcome(request_id, False, tuple(records))
        except IntegrityError as exc:
            raise StoreConflictError("remediation request: written concurrently; re-run") from exc

    def _covering_request(self, conn: Connection, dedup_keys: Sequence[str], now: datetime) -> str | None:
        """The one open request every dedup key points at, if any."""
        if not dedup_keys:
            return None
        owners = set()
        for key in dedup_keys:
            row = _read(conn, OPEN, key)
            if row is None:
                return None
            owners.add(str(row.value["request_id"]))
        if len(owners) != 1:
            return None
        (owner,) = owners
        entry = _read(conn, REQUESTS, owner)
        if entry is None:
            return None
        try:
            approval = approvals_repo.load(conn, str(entry.value["approval_id"]))
        except RingwardError:  # a missing approval means the request cannot be open
            approval = None
        return owner if request_is_open(entry.value, approval, now) else None

    def execute(
        self,
        *,
        request_id: str,
        expected_version: int,
        approval_id: str,
        check_approval: Callable[[Approval], None],
        consume: dict[str, Any],
        execution_id: str,
        execution: dict[str, Any],
        execution_draft: EvidenceDraft,
        dedup_keys: Sequence[str],
        actor: str,
        now: datetime,
        flow_run_id: str | None = None,
    ) -> tuple[Approval, builtins.list[EvidenceRecord]]:
        """Consume the approval, mark the request executed, close its dedup keys, store the execution
        and append its evidence -- all or nothing (a refusal writes nothing and propagates).

        ``check_approval`` runs on the locked approval before it is consumed (separation of duties).
        """
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                locked = approvals_repo.load(conn, approval_id, for_update=True)
                check_approval(locked)
                entry = _read(conn, REQUESTS, request_id)
                version = 0 if entry is None else entry.version
                if entry is None or version != expected_version:
                    raise StoreConflictError(f"remediation request {request_id}: expected version "
                                             f"{expected_version}, found {version} (changed concurrently; re-run)")
                consumed, consumption = self._approvals().consume_in(
                    conn, approval_id, execution_ref=execution_id, now=now, flow_run_id=flow_run_id, **consume)
                value = {**entry.value, "status": "executed", "execution_id": execution_id,
                         "executed_at": when.isoformat(), "executed_by": actor}
                compare_and_set(conn, REQUESTS, request_id, value, version, actor=actor, when=when)
                for key in dedup_keys:
                    row = _read(conn, OPEN, key)
                    if row is not None and row.value.get("request_id") == request_id:
                        compare_and_set(conn, OPEN, key, None, row.version, actor=actor, when=when)
                current = _read(conn, EXECUTIONS, execution_id)
                compare_and_set(conn, EXECUTIONS, execution_id, execution, 0 if current is None else current.version,
                     actor=actor, when=when)
                records = append_locked(conn, [execution_draft], now)
                return consumed, [consumption, *records]
        except IntegrityError as exc:
            raise StoreConflictError("remediation execution: written concurrently; re-run") from exc

    def decide(self, changes: Sequence[Change], drafts: Sequence[EvidenceDraft], *, actor: str, now: datetime
               ) -> builtins.list[EvidenceRecord]:
        """Apply compare-and-set ``changes`` and append ``drafts``, all or nothing.

        Raises:
            StoreConflictError: a row's version is not the expected one (another writer won).
        """
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                for namespace, key, value, expected in changes:
                    compare_and_set(conn, namespace, key, value, expected, actor=actor, when=when)
                return append_locked(conn, list(drafts), now) if drafts else []
        except IntegrityError as exc:
            raise StoreConflictError("remediation state: written concurrently; re-run") from exc

    def _approvals(self) -> approvals_repo.ApprovalRepository:
        return approvals_repo.ApprovalRepository(self._store)


def _read(conn: Connection, namespace: str, key: str) -> StateEntry | None:
    """One row, locked for the rest of the transaction on PostgreSQL (SQLite's BEGIN IMMEDIATE holds it)."""
    query = sa.select(kv_t).where(kv_t.c.namespace == namespace, kv_t.c.key == key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else _entry(row)


