"""The reconcile engines: columnar (polars) over Ringward's line layout, streaming per-endpoint loop otherwise.

Chosen by measurement (docs/benchmarks.md, ``bench/inventory_reconcile.py``): on 2 cores, a
million observations take the per-endpoint Python loop ~6 s of ``json`` decoding alone; DuckDB
reads NDJSON fast but decodes JSON held in a text column at ~6 s; polars splits the file into lines
and decodes them into typed columns in ~2 s with bounded memory, so polars runs the fleet and the
rules stay in :mod:`ringward.core.inventory.reconcile` (distinct versions are classified there and
mapped back; only drift rows come back to Python, where the core builds the items).

The columnar engine needs the line layout (:func:`~.observations_file.line_layout`); any other
layout, or a file the columnar pass cannot take whole (a line that is not one endpoint object, a
non-string field, a missing ``endpoint_id``), is handed to the streaming loop, which validates
every endpoint and names the first bad one. Both give the same :class:`Reconciliation` (a
parametrised test on random fleets holds them to it).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ringward.core.inventory.observations import ENDPOINT_INDENT, RFC3339_PATTERN, ObservationsHeader
from ringward.core.inventory.reconcile import (
    DesiredState,
    ReconcileLoop,
    Reconciliation,
    TargetCounts,
    assemble,
    endpoint_item,
    reconciliation_id_fields,
    reconciliation_id_frame,
    stale_cutoff,
    unknown_item,
    version_relations,
)
from ringward.operations.inventory.observations_file import (
    LineLayout,
    iter_endpoint_lines,
    line_layout,
    read_header_any,
    validated_endpoints,
)

Engine = Literal["auto", "columnar", "stream"]
#: the fields reconciliation reads (cavra-spec §8.4 plus the reference's aliases)
FIELDS = ("endpoint_id", "deployment_target", "target_id", "installed_version", "version", "binary_sha256",
          "installed_binary_sha256", "last_seen_at")
#: every key of a canonical line is followed by this; when a value is a string, by ``_STRING_VALUE``
_KEY_END = b'": '
_STRING_VALUE = b'": "'


class ColumnarUnsuitable(Exception):
    """The file is not something the columnar pass can take whole; use the streaming loop."""


@dataclass(frozen=True)
class EngineResult:
    header: ObservationsHeader
    reconciliation: Reconciliation
    engine: str
    #: SHA-256 of the observations file that was reconciled
    file_sha256: str


def file_digests(path: Path, layout: LineLayout, desired: DesiredState) -> tuple[str, str]:
    """(reconciliation id, SHA-256 of the whole file) in one sequential read, beside polars (hashing
    releases the GIL). The id covers the endpoint lines: each is its endpoint's id serialisation."""
    prefix, suffix = reconciliation_id_frame(reconciliation_id_fields(desired, layout.header.observed_at))
    ident = hashlib.sha256(prefix)
    whole = hashlib.sha256()
    indent = ENDPOINT_INDENT.encode()
    joined = b",\n" + indent
    with open(path, "rb") as handle:
        whole.update(handle.read(layout.start))
    for block in iter_endpoint_lines(path, layout):
        whole.update(block)
        if block.count(_KEY_END) != block.count(_STRING_VALUE):
            raise ColumnarUnsuitable("a value is not a string")
        body = block[len(indent):].replace(joined, b", ")
        if body.endswith(b",\n"):
            body = body[:-2] + b", "
        elif body.endswith(b"\n"):
            body = body[:-1]
        ident.update(body)
    with open(path, "rb") as handle:
        handle.seek(layout.end)
        whole.update(handle.read())
    ident.update(suffix)
    return "mer_" + ident.hexdigest()[:12], whole.hexdigest()


def _columnar(path: Path, layout: LineLayout, desired: DesiredState, *, now: datetime,
              stale_after: timedelta) -> tuple[Reconciliation, str]:
    """Decode the endpoint lines into columns and apply the core's rules column-wise.

    The file is refused to the streaming loop (:class:`ColumnarUnsuitable`) unless every line after
    the header is an indented endpoint object but the two closing lines, every ``": `` (key end)
    is followed by ``"`` (all values are strings; an escaped quote inside a string can only make
    the counts differ -- slower, never wrong) and every endpoint has an ``endpoint_id``."""
    import polars as pl

    with ThreadPoolExecutor(max_workers=1) as pool:
        id_future = pool.submit(file_digests, path, layout, desired)
        struct = pl.Struct({name: pl.String for name in FIELDS})
        line = pl.col("line")
        is_endpoint = line.str.starts_with(ENDPOINT_INDENT + "{")
        lines = pl.scan_csv(path, has_header=False, separator="\x01", quote_char=None, new_columns=["line"],
                            skip_rows=layout.header_lines, schema={"line": pl.String})

        def nonblank(name: str) -> pl.Expr:
            return pl.when(pl.col(name) != "").then(pl.col(name))

        decoded = (
            lines.with_columns(is_endpoint.alias("is_endpoint"))
            .with_columns(
                pl.when(pl.col("is_endpoint")).then(line.str.strip_chars_end(",")).otherwise(pl.lit("{}"))
                .str.json_decode(struct).alias("e"),
            )
            .with_row_index("idx")
            .unnest("e")
            .select(
                "idx",
                "is_endpoint",
                "endpoint_id",
                pl.coalesce(nonblank("deployment_target"), nonblank("target_id")).alias("target"),
                pl.coalesce(nonblank("installed_version"), nonblank("version")).alias("observed_version"),
                pl.coalesce(nonblank("binary_sha256"), nonblank("installed_binary_sha256")).alias("observed_sha"),
                nonblank("last_seen_at").alias("last_seen_at"),
            )
        )
        try:
            frame = decoded.collect()
        except pl.exceptions.PolarsError as exc:
            id_future.cancel()
            raise ColumnarUnsuitable(str(exc)) from exc
        # raises ColumnarUnsuitable when a value is not a string
        reconciliation_id, file_sha256 = id_future.result()
    closing = frame.height - 2
    if (closing < 0 or frame["is_endpoint"].head(closing).not_().any() or frame["is_endpoint"].tail(2).any()
            or frame["endpoint_id"].head(closing).null_count()):
        raise ColumnarUnsuitable("the endpoint lines are not all string-valued endpoint objects")
    frame = frame.head(closing).drop("is_endpoint")

    expected_sha = {t.id: t.binary_sha256.lower() for t in desired.targets}
    versions = frame["observed_version"].drop_nulls().unique().to_list()
    relations = version_relations(desired.version, versions) if desired.version else {}
    cutoff = stale_cutoff(now, stale_after).astimezone(UTC)
    parsed = (pl.when(pl.col("last_seen_at").str.contains(RFC3339_PATTERN))
              .then(pl.col("last_seen_at").str.replace(r"Z$", "+00:00")
                    .str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%:z", strict=False)))
    frame = frame.with_columns(
        pl.col("target").is_in(list(expected_sha)).fill_null(False).alias("desired"),
        pl.col("observed_version").replace_strict(relations, default=None, return_dtype=pl.String).alias("relation"),
        (pl.col("observed_sha").is_not_null()
         & (pl.col("observed_sha").str.to_lowercase()
            != pl.col("target").replace_strict(expected_sha, default=None, return_dtype=pl.String))
         ).fill_null(False).alias("binary_drift"),
        (pl.col("last_seen_at").is_not_null() & (parsed.is_null() | (parsed < cutoff))).alias("stale"),
    ).with_columns(
        (pl.col("relation").is_not_null() | pl.col("binary_drift") | pl.col("stale")).alias("drift"),
    )
    in_manifest = frame.filter(pl.col("desired"))
    counts = {t.id: TargetCounts() for t in desired.targets}
    grouped = in_manifest.group_by("target").agg(
        pl.len().alias("observed"), (~pl.col("drift")).sum().alias("compliant"),
        pl.col("relation").is_not_null().sum().alias("version_drift"), pl.col("binary_drift").sum(),
        pl.col("stale").sum())
    for row in grouped.iter_rows(named=True):
        counts[row["target"]] = TargetCounts(row["observed"], row["compliant"], row["version_drift"],
                                             row["binary_drift"], row["stale"])
    targets = {t.id: t for t in desired.targets}
    target_items: dict[str, list[dict[str, Any]]] = {}
    for row in in_manifest.filter(pl.col("drift")).sort("idx").iter_rows(named=True):
        target_items.setdefault(row["target"], []).append(endpoint_item(
            targets[row["target"]], desired.version, endpoint_id=row["endpoint_id"],
            observed_version=row["observed_version"], observed_sha=row["observed_sha"],
            last_seen_at=row["last_seen_at"], relation=row["relation"], binary_drift=row["binary_drift"],
            stale=row["stale"]))
    unknown = [
        (row["target"], row["idx"], unknown_item(endpoint_id=row["endpoint_id"], target=row["target"],
                                                 observed_version=row["observed_version"]))
        for row in frame.filter(~pl.col("desired") & pl.col("target").is_not_null()).iter_rows(named=True)
    ]
    return assemble(desired, reconciliation_id=reconciliation_id, observed_endpoint_count=frame.height,
                    targets=counts, target_items=target_items, unknown_items=unknown), file_sha256


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
