"""The reconcile engines: columnar (polars) over Ringward's line layout, streaming per-endpoint loop otherwise.

Chosen by measurement (docs/benchmarks.md, ``bench/inventory_reconcile.py``). The columnar engine
reads Ringward's line layout (:func:`~.observations_file.line_layout`) once, in blocks of whole
endpoint lines (about 1 MiB), and does everything from that one read:

- the main thread rewrites each block's line breaks ``",\\n    {"`` into ``", {"``: the result is at
  once the block's part of the reconciliation id preimage (each line *is* its endpoint's id
  serialisation) and, in brackets, one JSON array; it also refuses the block to the streaming loop
  unless it is plainly Ringward's writing (see :func:`canonical_array`);
- a hashing thread feeds the raw blocks to the file's SHA-256 and the rewritten ones to the id's
  (hashlib releases the GIL);
- two worker threads parse the arrays with polars (``read_json`` into typed columns, GIL released)
  and apply the rules column-wise to batches of rows, so only per-target counts and drift rows
  come back to Python, where the core builds the items
  (:func:`ringward.core.inventory.reconcile.endpoint_item`).

Memory is bounded by a few groups of blocks in flight, one batch of decoded rows and the drift
rows. The rules stay in :mod:`ringward.core.inventory.reconcile` (distinct versions are classified
there and mapped back; timestamps are held to :func:`~ringward.core.inventory.observations.parse_timestamp`).

Any other layout, or a file the columnar pass cannot take whole (a line that is not one indented
endpoint object, a non-string value, a missing ``endpoint_id``, a decoded field outside the
:class:`~ringward.core.inventory.observations.Endpoint` model's lengths, non-ASCII bytes or an
unpaired surrogate escape in a line), is handed to the streaming loop, which validates every
endpoint and names the first bad one. Both give the same :class:`Reconciliation` (parametrised
tests on adversarial random fleets hold them to it). Known limits, unchanged from the engine
before: the lines are taken to be Ringward's own ``json.dumps(sort_keys=True)``, so a hand-made
line with other spacing or key order gets an id over its own bytes, a duplicate key keeps its
first value (the loop keeps the last), and fields the pass does not read are not length-checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ringward.core.inventory.observations import ENDPOINT_INDENT, RFC3339_PATTERN, Endpoint, ObservationsHeader
from ringward.core.inventory.reconcile import (
    DesiredState,
    ReconcileLoop,
    Reconciliation,
    TargetCounts,
    assemble,
    endpoint_item,
    reconciliation_id,
    reconciliation_id_fields,
    reconciliation_id_frame,
    stale_cutoff,
    unknown_item,
    version_relations,
)
from ringward.operations.inventory.observations_file import (
    LineLayout,
    line_layout,
    read_header_any,
    validated_endpoints,
)

if TYPE_CHECKING:
    import polars as pl

Engine = Literal["auto", "columnar", "stream"]
#: the fields reconciliation reads (cavra-spec §8.4 plus the reference's aliases)
FIELDS = ("endpoint_id", "deployment_target", "target_id", "installed_version", "version", "binary_sha256",
          "installed_binary_sha256", "last_seen_at")

#: bytes read, rewritten, hashed and parsed per block (whole lines; a longer line widens the window);
#: polars parses a block that stays in the CPU caches markedly faster than a large one
BLOCK_BYTES = 1 << 20
#: blocks handed to the hashing and decoding threads at once (each hand-off can wait for a time
#: slice on a busy machine, so they are few)
_GROUP = 8
#: groups read ahead of the hashing and decoding threads at most (bounds memory)
_IN_FLIGHT = 2
_WORKERS = 2
#: decoded rows the rules are applied to at once (each application costs a few milliseconds whatever its size)
_BATCH_ROWS = 200_000
_LINE_START = (ENDPOINT_INDENT + "{").encode()
#: a line break between two endpoint lines, and the id preimage's separator that replaces it
_LINE_BREAK = b",\n" + _LINE_START
_JOINED = b", {"
#: a key followed by something other than a string (canonical separators); an escaped quote in a
#: string can match too -- then the file goes to the streaming loop: slower, never wrong
_NON_STRING = re.compile(rb'": [^"]')
#: what may be a UTF-16 surrogate escape; then :data:`_ESCAPE` reads the escapes in order to find an
#: unpaired one (polars would decode it to U+0000, the model refuses it)
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"\\(?:(?P<pair>u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                     rb"|(?P<lone>u[dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.DOTALL)


class ColumnarUnsuitable(Exception):
    """The file is not something the columnar pass can take whole; use the streaming loop."""


@dataclass(frozen=True)
class EngineResult:
    header: ObservationsHeader
    reconciliation: Reconciliation
    engine: str
    #: SHA-256 of the observations file that was reconciled
    file_sha256: str


def _length_limits() -> tuple[dict[str, int], dict[str, int]]:
    """(min, max) lengths of the decoded fields, from the :class:`Endpoint` model (the streaming
    loop's validation), so the columnar pass refuses what the model would."""
    least: dict[str, int] = {}
    most: dict[str, int] = {}
    for name in FIELDS:
        info = Endpoint.model_fields.get(name)
        for rule in info.metadata if info is not None else ():
            if isinstance(getattr(rule, "min_length", None), int):
                least[name] = rule.min_length
            if isinstance(getattr(rule, "max_length", None), int):
                most[name] = rule.max_length
    return least, most


_MIN_LENGTH, _MAX_LENGTH = _length_limits()


# --- reading ---------------------------------------------------------------------------------------------


def endpoint_blocks(path: Path, layout: LineLayout, block_bytes: int | None = None
                    ) -> Iterator[tuple[memoryview, bool]]:
    """Bytes ``[layout.start, layout.end)`` as blocks of whole endpoint lines (``    {...},\\n`` each) of
    about ``block_bytes`` (:data:`BLOCK_BYTES`), read with ``pread`` and handed out as views (no
    copy); the flag marks the last block."""
    block_bytes = block_bytes or BLOCK_BYTES
    fd = os.open(path, os.O_RDONLY)
    try:
        offset, window = layout.start, block_bytes
        while offset < layout.end:
            want = min(window, layout.end - offset)
            data = os.pread(fd, want, offset)
            if len(data) != want:
                raise ColumnarUnsuitable("the file changed while it was read")
            last = offset + want == layout.end
            cut = want if last else data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than the window
                window *= 2
                continue
            window = block_bytes
            offset += cut
            yield memoryview(data)[:cut], last
    finally:
        os.close(fd)


def _read_range(path: Path, start: int, end: int | None) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read() if end is None else handle.read(end - start)


def canonical_array(block: memoryview, last: bool) -> bytes:
    """``[    e1, e2, ...]``: the block's endpoint lines as one JSON array whose items are joined with
    ``", "`` -- bytes ``[5:-1]`` are the block's part of the reconciliation id preimage.

    Raises :class:`ColumnarUnsuitable` unless the block is plainly Ringward's writing: every line
    ``    {...},`` (the file's last without the comma), nothing but ASCII, no raw CR or tab, every
    ``": `` followed by a string, no unpaired surrogate escape. (What Ringward writes always
    passes; anything else is read by the streaming loop, which validates every endpoint.)"""
    if block[: len(_LINE_START)].tobytes() != _LINE_START:
        raise ColumnarUnsuitable("an endpoint line is not an indented object")
    if last:
        body = block[:-1]
    elif block[-2:].tobytes() == b",\n":
        body = block[:-2]
    else:
        raise ColumnarUnsuitable("an endpoint line does not end with a comma")
    # split + join: one search pass where replace makes two
    lines = body.tobytes().split(_LINE_BREAK)
    lines[0] = b"[" + lines[0]
    lines[-1] += b"]"
    array = _JOINED.join(lines)
    if array.find(b"\n") >= 0 or array.find(b"\r") >= 0 or array.find(b"\t") >= 0:
        raise ColumnarUnsuitable("the endpoint lines are not one indented object each")
    if not array.isascii():
        raise ColumnarUnsuitable("an endpoint line holds non-ASCII bytes (not json.dumps output)")
    if _NON_STRING.search(array) is not None:
        raise ColumnarUnsuitable("a value is not a string")
    if array.find(b"\\") >= 0 and _SURROGATE_HINT.search(array) is not None and any(
            match.lastgroup == "lone" for match in _ESCAPE.finditer(array)):
        raise ColumnarUnsuitable("an unpaired surrogate escape")
    return array


def _hash_block(whole: Any, ident: Any, block: memoryview, array: bytes, first: bool) -> None:
    """The raw block into the file digest, its endpoints (``array[5:-1]``) into the id digest."""
    whole.update(block)
    if not first:
        ident.update(b", ")
    ident.update(memoryview(array)[5:-1])


def _hash_group(whole: Any, ident: Any, blocks: list[memoryview], arrays: list[bytes], first: bool) -> None:
    for index, (block, array) in enumerate(zip(blocks, arrays, strict=True)):
        _hash_block(whole, ident, block, array, first and index == 0)


def file_digests(path: Path, layout: LineLayout, desired: DesiredState) -> tuple[str, str]:
    """(reconciliation id, SHA-256 of the whole file) in one sequential read (the partitioned path's
    digests). A file the columnar pass would refuse gets the id the streaming loop computes."""
    prefix, suffix = reconciliation_id_frame(reconciliation_id_fields(desired, layout.header.observed_at))
    ident = hashlib.sha256(prefix)
    whole = hashlib.sha256(_read_range(path, 0, layout.start))
    try:
        for index, (block, last) in enumerate(endpoint_blocks(path, layout)):
            _hash_block(whole, ident, block, canonical_array(block, last), index == 0)
    except ColumnarUnsuitable:
        return reconciliation_id(desired, layout.header.observed_at, validated_endpoints(path)), _file_sha256(path)
    whole.update(_read_range(path, layout.end, None))
    ident.update(suffix)
    return "mer_" + ident.hexdigest()[:12], whole.hexdigest()


# --- decoding and rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """What a decoding thread needs to apply the core's rules to a block."""

    desired: DesiredState
    #: desired target -> expected checksum (lower case), None when the manifest gives none
    expected_sha: dict[str, str | None]
    cutoff: datetime
    #: observed version -> relation to the release (:func:`version_relations`), filled as versions appear
    _relations: dict[str, str | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def relations(self, versions: list[str]) -> dict[str, str | None]:
        """The relation of each of ``versions`` (distinct), classified once per run by the core."""
        with self._lock:
            unseen = [v for v in versions if v not in self._relations]
            if unseen:
                self._relations.update(version_relations(self.desired.version, unseen))
            return {v: self._relations[v] for v in versions}


@dataclass(frozen=True)
class _BlockResult:
    rows: int
    #: (target, observed, compliant, version drift, binary drift, stale) per desired target seen
    counts: list[tuple[Any, ...]]
    #: drift rows in file order: (target, endpoint_id, version, sha, last_seen_at, relation, binary, stale)
    drift: list[tuple[Any, ...]]
    #: endpoints on targets not in the manifest: (row in block, endpoint_id, target, version)
    unknown: list[tuple[Any, ...]]


def _schema() -> dict[str, Any]:
    import polars as pl

    return {name: pl.String for name in FIELDS}


def _nonblank(name: str) -> pl.Expr:
    import polars as pl

    return pl.when(pl.col(name) != "").then(pl.col(name))


def _outside_model(frame: pl.DataFrame) -> bool:
    """Whether an endpoint lacks ``endpoint_id`` or a decoded field is shorter or longer than the
    :class:`Endpoint` model allows (lengths in bytes first -- O(1) each and never below the length
    in characters -- then in characters where the bytes exceed a maximum)."""
    import polars as pl

    if frame.get_column("endpoint_id").null_count():
        return True
    # a string is empty in bytes exactly when it is in characters
    short = [(pl.col(name).str.len_bytes() < least).any() for name, least in _MIN_LENGTH.items()]
    if frame.select(pl.any_horizontal(*short)).item():
        return True
    long = [(pl.col(name).str.len_bytes() > most).any() for name, most in _MAX_LENGTH.items()]
    if not frame.select(pl.any_horizontal(*long)).item():
        return False
    return bool(frame.select(pl.any_horizontal(
        *[(pl.col(name).str.len_chars() > most).any() for name, most in _MAX_LENGTH.items()])).item())


def _with_seen_instant(frame: pl.DataFrame, name: str, alias: str) -> pl.DataFrame:
    """``frame`` plus column ``alias``: the timestamps of column ``name`` as UTC instants, null where
    :func:`~ringward.core.inventory.observations.parse_timestamp` gives None: not RFC 3339 with a
    zone, not a calendar time (polars' parser refuses those too), a leap second (polars would roll
    it over) or beyond year 9999 (Python's datetime range).

    ``YYYY-MM-DDTHH:MM:SSZ`` (what fleets mostly send) takes polars' fixed-format parser, five times
    faster than the general one, which only sees the distinct other values."""
    import polars as pl

    text = pl.col(name)
    utc = pl.Datetime("us", "UTC")
    framed = frame.with_columns(
        text.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%SZ", strict=False).dt.replace_time_zone("UTC")
        .alias(alias),
        (text.str.contains(RFC3339_PATTERN) & (text.str.slice(17, 1) < "6")).alias(f"{alias}_rfc3339"),
    )
    others = framed.filter(pl.col(alias).is_null() & pl.col(f"{alias}_rfc3339")).select(text.unique())
    if others.height:
        general = others.with_columns(
            text.str.strptime(utc, "%Y-%m-%dT%H:%M:%S%.f%#z", strict=False).alias(f"{alias}_general"))
        framed = framed.join(general, on=name, how="left", maintain_order="left").with_columns(
            pl.coalesce(alias, f"{alias}_general").alias(alias)).drop(f"{alias}_general")
    instant = pl.col(alias)
    return framed.with_columns(
        pl.when(pl.col(f"{alias}_rfc3339") & (instant.dt.year() <= 9999)).then(instant).alias(alias),
    ).drop(f"{alias}_rfc3339")


def _decode(array: bytes) -> pl.DataFrame:
    """One block's array parsed into typed columns (polars releases the GIL)."""
    import polars as pl
    from polars.exceptions import PanicException, PolarsError

    try:
        return pl.read_json(array, schema=_schema())
    except (PolarsError, PanicException) as exc:
        raise ColumnarUnsuitable(f"polars could not decode a block: {exc}") from exc


def _decode_group(arrays: list[bytes]) -> pl.DataFrame:
    import polars as pl

    return pl.concat([_decode(array) for array in arrays], rechunk=False)


def _apply_rules(frames: list[pl.DataFrame], rules: _Rules) -> _BlockResult:
    """A batch of decoded blocks (in file order), checked and reduced by the rules column-wise."""
    import polars as pl

    frame = pl.concat(frames, rechunk=False)
    if _outside_model(frame):
        raise ColumnarUnsuitable("an endpoint lacks endpoint_id or a field is outside the model's lengths")
    base = frame.select(
        "endpoint_id",
        pl.coalesce(_nonblank("deployment_target"), _nonblank("target_id")).alias("target"),
        pl.coalesce(_nonblank("installed_version"), _nonblank("version")).alias("observed_version"),
        pl.coalesce(_nonblank("binary_sha256"), _nonblank("installed_binary_sha256")).alias("observed_sha"),
        _nonblank("last_seen_at").alias("last_seen_at"),
    )
    del frame
    relations = (rules.relations(base.get_column("observed_version").drop_nulls().unique().to_list())
                 if rules.desired.version else {})
    expected = pl.col("target").replace_strict(rules.expected_sha, default=None, return_dtype=pl.String)
    derived = _with_seen_instant(base, "last_seen_at", "seen").with_columns(
        pl.col("target").is_in(list(rules.expected_sha)).fill_null(False).alias("desired"),
        (pl.col("observed_version").replace_strict(relations, default=None, return_dtype=pl.String)
         if relations else pl.lit(None, dtype=pl.String)).alias("relation"),
        (pl.col("observed_sha").is_not_null() & (pl.col("observed_sha").str.to_lowercase() != expected))
        .fill_null(False).alias("binary_drift"),
        (pl.col("last_seen_at").is_not_null() & (pl.col("seen").is_null() | (pl.col("seen") < rules.cutoff)))
        .alias("stale"),
    ).with_columns(
        (pl.col("relation").is_not_null() | pl.col("binary_drift") | pl.col("stale")).alias("drift"),
    )
    in_manifest = derived.filter(pl.col("desired"))
    counts = in_manifest.group_by("target").agg(
        pl.len(), (~pl.col("drift")).sum(), pl.col("relation").is_not_null().sum(), pl.col("binary_drift").sum(),
        pl.col("stale").sum()).rows()
    drift = in_manifest.filter(pl.col("drift")).select(
        "target", "endpoint_id", "observed_version", "observed_sha", "last_seen_at", "relation", "binary_drift",
        "stale").rows()
    unknown = derived.with_row_index("row").filter(~pl.col("desired") & pl.col("target").is_not_null()).select(
        "row", "endpoint_id", "target", "observed_version").rows()
    return _BlockResult(derived.height, counts, drift, unknown)


def _combine(desired: DesiredState, results: list[_BlockResult], reconciliation_id: str) -> Reconciliation:
    """The blocks' results, in file order, as the core's :class:`Reconciliation`."""
    targets = {t.id: t for t in desired.targets}
    counts = {t.id: TargetCounts() for t in desired.targets}
    target_items: dict[str, list[dict[str, Any]]] = {}
    unknown: list[tuple[str, int, dict[str, Any]]] = []
    offset = 0
    for result in results:
        for target, observed, compliant, version_drift, binary_drift, stale in result.counts:
            total = counts[target]
            total.observed += observed
            total.compliant += compliant
            total.version_drift += version_drift
            total.binary_drift += binary_drift
            total.stale += stale
        for target, endpoint_id, version, sha, last_seen_at, relation, binary, stale in result.drift:
            target_items.setdefault(target, []).append(endpoint_item(
                targets[target], desired.version, endpoint_id=endpoint_id, observed_version=version,
                observed_sha=sha, last_seen_at=last_seen_at, relation=relation, binary_drift=binary, stale=stale))
        for row, endpoint_id, target, version in result.unknown:
            unknown.append((target, offset + row, unknown_item(endpoint_id=endpoint_id, target=target,
                                                                observed_version=version)))
        offset += result.rows
    return assemble(desired, reconciliation_id=reconciliation_id, observed_endpoint_count=offset, targets=counts,
                    target_items=target_items, unknown_items=unknown)


def _columnar(path: Path, layout: LineLayout, desired: DesiredState, *, now: datetime,
              stale_after: timedelta) -> tuple[Reconciliation, str]:
    """One read of the endpoint lines: rewrite and check (this thread), hash (one thread), decode and
    apply the rules (two threads), a few groups of blocks in flight. Raises :class:`ColumnarUnsuitable`."""
    rules = _Rules(desired, {t.id: t.binary_sha256.lower() or None for t in desired.targets},
                   stale_cutoff(now, stale_after).astimezone(UTC))
    prefix, suffix = reconciliation_id_frame(reconciliation_id_fields(desired, layout.header.observed_at))
    ident = hashlib.sha256(prefix)
    whole = hashlib.sha256(_read_range(path, 0, layout.start))
    hashing: deque[Future[None]] = deque()
    decoding: deque[Future[pl.DataFrame]] = deque()
    reducing: deque[Future[_BlockResult]] = deque()
    batch: list[pl.DataFrame] = []
    batch_rows = 0

    def take_decoded() -> None:
        nonlocal batch_rows
        frame = decoding.popleft().result()
        batch.append(frame)
        batch_rows += frame.height
        if batch_rows >= _BATCH_ROWS:
            reduce_batch()

    def reduce_batch() -> None:
        nonlocal batch, batch_rows
        if batch:
            reducing.append(workers.submit(_apply_rules, batch, rules))
            batch, batch_rows = [], 0

    with ThreadPoolExecutor(1, thread_name_prefix="reconcile-hash") as hasher, \
            ThreadPoolExecutor(_WORKERS, thread_name_prefix="reconcile-decode") as workers:
        try:
            group: list[tuple[memoryview, bytes]] = []
            first = True
            for block, last in endpoint_blocks(path, layout):
                group.append((block, canonical_array(block, last)))
                if len(group) < _GROUP and not last:
                    continue
                blocks, arrays = [b for b, _ in group], [a for _, a in group]
                hashing.append(hasher.submit(_hash_group, whole, ident, blocks, arrays, first))
                decoding.append(workers.submit(_decode_group, arrays))
                group, first = [], False
                while len(decoding) > _IN_FLIGHT:
                    take_decoded()
                while len(hashing) > _IN_FLIGHT:
                    hashing.popleft().result()
            while decoding:
                take_decoded()
            reduce_batch()
            results = [future.result() for future in reducing]
            while hashing:
                hashing.popleft().result()
        except BaseException:
            for pending in (decoding, hashing, reducing):
                for future in pending:
                    future.cancel()
            raise
    whole.update(_read_range(path, layout.end, None))
    ident.update(suffix)
    return _combine(desired, results, "mer_" + ident.hexdigest()[:12]), whole.hexdigest()


# --- the streaming loop -------------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    from ringward.operations.common.files import sha256_file

    return sha256_file(path)


def _stream(path: Path, desired: DesiredState, *, now: datetime, stale_after: timedelta) -> EngineResult:
    header, _ = read_header_any(path)
    loop = ReconcileLoop(desired, header.observed_at, now, stale_after)
    for endpoint in validated_endpoints(path):
        loop.add(endpoint)
    return EngineResult(header, loop.finish(), "stream", _file_sha256(path))


def reconcile_file(path: Path, desired: DesiredState, *, now: datetime, stale_after: timedelta,
                   engine: Engine = "auto") -> EngineResult:
    """Reconcile the observations file at ``path`` against ``desired`` (see the module docstring).

    Raises:
        InputError: the file is not a valid observations document (named record and field).
    """
    if engine != "stream":
        layout = line_layout(path)
        if layout is not None:
            if layout.empty:
                loop = ReconcileLoop(desired, layout.header.observed_at, now, stale_after)
                return EngineResult(layout.header, loop.finish(), "columnar", _file_sha256(path))
            try:
                reconciliation, file_sha256 = _columnar(path, layout, desired, now=now, stale_after=stale_after)
                return EngineResult(layout.header, reconciliation, "columnar", file_sha256)
            except ColumnarUnsuitable:
                pass
    return _stream(path, desired, now=now, stale_after=stale_after)
