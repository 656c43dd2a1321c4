"""The delivery ledger interface the engine claims keys through, and an in-memory implementation.

The production ledger is ``ringward.store.delivery_log.DeliveryLog`` (a database table with a
unique key and compare-and-swap claims, so idempotency holds across processes); the engine only
sees this protocol. :class:`MemoryLedger` serves unit tests and single-process tools.

Claim rules (both implementations):

- no row: insert it ``in_progress`` for this owner -> claimed;
- ``succeeded``: never claimed again -> already delivered;
- ``in_progress`` with a live lease held by another owner -> in flight (the same owner, e.g. a
  Prefect retry of the same task run, takes its own claim back);
- ``in_progress`` with an expired lease, ``failed``, ``rejected``, ``disabled``, ``expired``:
  taken over by compare-and-swap -> claimed (an explicit re-run may retry a final failure);
- the destination is disabled (410 earlier) -> destination disabled, nothing claimed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.results import (
    ClaimStatus,
    Completion,
    DeliveryKey,
    DeliveryLogEntry,
    DeliveryState,
    completed_entry,
)


class DeliveryLedger(Protocol):
    """Where the engine claims keys and records outcomes."""

    def claim(
        self,
        keys: Sequence[DeliveryKey],
        *,
        event_types: Mapping[str, str],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> dict[DeliveryKey, ClaimStatus]: ...

    def complete(self, completions: Sequence[Completion], *, owner: str, now: datetime) -> None: ...

    def disabled_destinations(self) -> dict[str, str]: ...

    def disable_destination(self, name: str, *, provider: str, reason: str, now: datetime) -> None: ...

    def record_events(self, events: Sequence[ConnectorEvent], *, now: datetime) -> None: ...


@dataclass
class _Row:
    entry: DeliveryLogEntry
    owner: str | None
    lease_until: datetime | None


class MemoryLedger:
    """Thread-safe in-memory ledger (one process)."""

    def __init__(self) -> None:
        self._rows: dict[DeliveryKey, _Row] = {}
        self._disabled: dict[str, str] = {}
        self._events: dict[str, ConnectorEvent] = {}
        self._lock = threading.Lock()

    def claim(
        self,
        keys: Sequence[DeliveryKey],
        *,
        event_types: Mapping[str, str],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> dict[DeliveryKey, ClaimStatus]:
        out: dict[DeliveryKey, ClaimStatus] = {}
        lease = now + timedelta(seconds=lease_seconds)
        with self._lock:
            for key in keys:
                if key.destination in self._disabled:
                    out[key] = ClaimStatus.DESTINATION_DISABLED
                    continue
                row = self._rows.get(key)
                if row is None:
                    entry = DeliveryLogEntry(
                        event_id=key.event_id,
                        event_type=event_types.get(key.event_id, ""),
                        provider=key.provider,
                        destination=key.destination,
                        state=DeliveryState.IN_PROGRESS,
                        run_count=1,
                        updated_at=now,
                    )
                    self._rows[key] = _Row(entry, owner, lease)
                    out[key] = ClaimStatus.CLAIMED
                    continue
                state = row.entry.state
                if state is DeliveryState.SUCCEEDED:
                    out[key] = ClaimStatus.ALREADY_DELIVERED
                elif (
                    state is DeliveryState.IN_PROGRESS
                    and row.owner != owner
                    and row.lease_until
                    and row.lease_until > now
                ):
                    out[key] = ClaimStatus.IN_FLIGHT
                else:
                    row.entry = row.entry.model_copy(
                        update={
                            "state": DeliveryState.IN_PROGRESS,
                            "run_count": row.entry.run_count + 1,
                            "updated_at": now,
                        }
                    )
                    row.owner, row.lease_until = owner, lease
                    out[key] = ClaimStatus.CLAIMED
        return out

    def complete(self, completions: Sequence[Completion], *, owner: str, now: datetime) -> None:
        with self._lock:
            for completion in completions:
                result = completion.result
                row = self._rows.get(result.key)
                if row is None or row.owner != owner or row.entry.state is not DeliveryState.IN_PROGRESS:
                    continue  # lost the claim (lease expired and taken over): never overwrite
                self._rows[result.key] = _Row(completed_entry(row.entry, completion, now), None, None)

    def disabled_destinations(self) -> dict[str, str]:
        with self._lock:
            return dict(self._disabled)

    def disable_destination(self, name: str, *, provider: str, reason: str, now: datetime) -> None:
        with self._lock:
            self._disabled[name] = reason

    def enable_destination(self, name: str) -> bool:
        with self._lock:
            return self._disabled.pop(name, None) is not None

    def record_events(self, events: Sequence[ConnectorEvent], *, now: datetime) -> None:
        with self._lock:
            for event in events:
                self._events.setdefault(event.event_id, event)

    def entries(self) -> list[DeliveryLogEntry]:
        with self._lock:
            return [row.entry for row in self._rows.values()]

    def entry(self, key: DeliveryKey) -> DeliveryLogEntry | None:
        with self._lock:
            row = self._rows.get(key)
            return row.entry if row else None


__all__ = ["Completion", "DeliveryLedger", "MemoryLedger", "completed_entry"]
