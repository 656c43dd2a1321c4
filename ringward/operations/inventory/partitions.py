"""Partitioned reconciliation (the Dask path): split an observations file in Ringward's line layout
into byte ranges at line boundaries, reconcile each range anywhere (a worker needs the file and the
desired state), and merge the partials (:func:`ringward.core.inventory.reconcile.merge`).

The reconciliation id covers the whole file in order, so it is computed by one sequential pass
(:func:`digests`), beside the partitions. A file in any other layout has no plan (None): reconcile
it with the single-process engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from ringward.core.errors import InputError, validation_problem
from ringward.core.inventory.observations import ENDPOINT_INDENT, Endpoint, ObservationsHeader
from ringward.core.inventory.reconcile import DesiredState, Partial, ReconcileLoop
from ringward.operations.inventory.engine import file_digests
from ringward.operations.inventory.observations_file import LineLayout, line_layout

MAX_PARTITIONS = 4096


@dataclass(frozen=True)
class PartitionRange:
    start: int
    end: int
    first_index: int


@dataclass(frozen=True)
class PartitionPlan:
    header: ObservationsHeader
    layout: LineLayout
    ranges: tuple[PartitionRange, ...]


def plan_partitions(path: Path, partitions: int) -> PartitionPlan | None:
    """Up to ``partitions`` line-aligned byte ranges of the endpoint lines, each with the file index
    of its first endpoint; None when the file is not in the line layout."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise InputError(f"--partitions: expected 1..{MAX_PARTITIONS}, found {partitions}")
    layout = line_layout(path)
    if layout is None:
        return None
    size = layout.end - layout.start
    ranges: list[PartitionRange] = []
    with open(path, "rb") as handle:
        position, index = layout.start, 0
        step = max(1, size // partitions)
        while position < layout.end:
            cut = min(layout.end, position + step)
            if cut < layout.end:
                handle.seek(cut)
                cut = min(layout.end, cut + len(handle.readline()))
            handle.seek(position)
            lines = handle.read(cut - position).count(b"\n")
            ranges.append(PartitionRange(position, cut, index))
            position, index = cut, index + lines
    return PartitionPlan(layout.header, layout, tuple(ranges))


def reconcile_range(path: Path, part: PartitionRange, desired: DesiredState, *, observed_at: str, now: datetime,
                    stale_after: timedelta) -> Partial:
    """One range's partial: each line parsed and schema-checked, then the core's per-endpoint rules."""
    loop = ReconcileLoop(desired, observed_at, now, stale_after, first_index=part.first_index, compute_id=False)
    indent = ENDPOINT_INDENT.encode()
    with open(path, "rb") as handle:
        handle.seek(part.start)
        data = handle.read(part.end - part.start)
    for offset, raw in enumerate(data.splitlines()):
        index = part.first_index + offset
        if not raw.startswith(indent + b"{"):
            raise InputError(f"{path}: endpoints[{index}]: expected one endpoint object per line")
        try:
            endpoint = json.loads(raw[len(indent):].rstrip(b","))
            Endpoint.model_validate(endpoint)
        except ValueError as exc:
            reason = validation_problem(exc) if isinstance(exc, ValidationError) else f"invalid JSON: {exc}"
            raise InputError(f"{path}: endpoints[{index}]: {reason}") from exc
        loop.add(endpoint)
    return loop.partial()


def digests(path: Path, layout: LineLayout, desired: DesiredState) -> tuple[str, str]:
    """(reconciliation id, file SHA-256) in one sequential pass."""
    return file_digests(path, layout, desired)
