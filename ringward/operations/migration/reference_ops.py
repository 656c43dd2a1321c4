"""``ringward migrate reference``: import a reference (CAVRA) installation into the Ringward store.

Reads, without changing anything there, the installation's evidence metadata stores (JSON and
SQLite), approval stores (JSON and SQLite) and connector file (cavra-spec §5.4, §6, §7.2). Each
file is read once; its SHA-256 is taken over exactly the bytes parsed (a SQLite store is loaded
from those bytes into memory, so the digest is what was imported even if the reference is
running). Then, in the store:

1. one ``reference-import`` record naming every source file and digest opens the imported history;
2. every valid evidence item is appended, marked imported (payload key ``ringward_import``), keyed
   as ``ringward evidence import`` keys it, so the two never duplicate each other;
3. every valid approval is inserted by its reference id (origin ``import``: history only, it can
   never authorise an execution);
4. the connector file becomes a Ringward ``connectors.yaml`` (secrets as references only).

Each step is insert-or-skip by a key the store enforces, so a re-run (or two runs at once) adds
nothing twice. A malformed record is reported (file, record, field, expected vs found) and skipped.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ringward.core.approvals.rules import Approval
from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.delivery.config import load_config_document
from ringward.core.errors import ApprovalNotFoundError, InputError, OutputExistsError, RingwardError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.migration.connectors import ConnectorMigration, migrate_connectors, render_connectors_yaml
from ringward.core.migration.reference import (
    APPROVAL_COLUMNS,
    APPROVALS_JSON_PATHS,
    APPROVALS_TABLE,
    CONNECTOR_PATHS,
    EVIDENCE_COLUMNS,
    EVIDENCE_JSON_PATHS,
    EVIDENCE_TABLE,
    ORIGIN,
    REFERENCE_DIR,
    SQLITE_MAGIC,
    SQLITE_SUFFIXES,
    ImportOrigin,
    RecordProblem,
    SourceFile,
    SourceKind,
    check_approval_item,
    check_metadata_item,
    check_row_against_payload,
    found_text,
    import_record_draft,
    items_of,
    migrated_approval,
    migrated_metadata_draft,
    parse_row_payload,
    sources_digest,
)
from ringward.core.migration.report import ConnectorResult, ImportRecordResult, MigrationReport, StoreResult
from ringward.operations.common.files import (
    atomic_write,
    check_input_path,
    check_output_parent,
    describe_os_error,
    read_capped,
)
from ringward.settings import ringward_home
from ringward.store import Store
from ringward.store.evidence.repo import existing_import_keys

MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_SQLITE_BYTES = 512 * 1024 * 1024
MAX_CONNECTOR_BYTES = 4 * 1024 * 1024
#: SQLite files looked at under .cavra/ (a bound on a hostile or huge tree)
MAX_SQLITE_FILES = 200
CONNECTORS_KIND = "reference-connectors-import"
CONNECTORS_SCHEMA = "ringward.reference-connectors-import.v1"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_connectors_output() -> Path:
    return ringward_home() / "connectors.yaml"


# --- finding and reading the installation ----------------------------------------------------------


def locate_installation(path: Path) -> Path:
    """The installation root (the directory holding ``.cavra/``) for ``--from``.

    ``path`` may be the project directory or its ``.cavra`` directory itself.

    Raises:
        InputError: missing, not a directory, or no ``.cavra/`` directory (not a reference installation).
    """
    check_input_path(path, option="--from", kind="dir")
    if path.name == REFERENCE_DIR:
        return path.parent
    candidate = path / REFERENCE_DIR
    if not candidate.is_dir():
        raise InputError(
            f"--from {path}: not a reference installation (expected a {REFERENCE_DIR}/ directory in it, "
            f"found {'a file' if candidate.exists() else 'none'})"
        )
    try:
        check_input_path(candidate, option="--from", kind="dir")
    except InputError as exc:
        raise InputError(f"{exc.message} ({REFERENCE_DIR}/ of the reference installation)") from None
    return path


@dataclass
class _Loaded:
    """Everything read from the installation, before anything touches the store."""

    root: Path
    sources: list[SourceFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    #: (source path, source sha256, record label, index, item)
    evidence: list[tuple[str, str, str, int, dict[str, Any]]] = field(default_factory=list)
    approvals: list[tuple[str, str, str, int, dict[str, Any]]] = field(default_factory=list)
    evidence_found: int = 0
    approvals_found: int = 0
    evidence_skipped: int = 0
    approvals_skipped: int = 0
    connectors_source: SourceFile | None = None
    connectors: ConnectorMigration | None = None


def _file_problem(source: str, expected: str, found: str) -> RecordProblem:
    return RecordProblem(source=source, expected=expected, found=found)


def _read(loaded: _Loaded, relative: str, cap: int, kinds: tuple[SourceKind, ...]) -> tuple[bytes, SourceFile] | None:
    path = loaded.root / relative
    try:
        data = read_capped(path, cap, source=relative)
    except InputError as exc:
        loaded.problems.append(_file_problem(relative, "a readable regular file", exc.message.split(": ", 1)[-1]))
        return None
    source = SourceFile(path=relative, kinds=kinds, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    loaded.sources.append(source)
    return data, source


def _exists(root: Path, relative: str) -> bool:
    return os.path.lexists(root / relative)


def _load_json_store(loaded: _Loaded, relative: str, kind: SourceKind) -> None:
    read = _read(loaded, relative, MAX_JSON_BYTES, (kind,))
    if read is None:
        return
    data, source = read
    try:
        items = items_of(loads_strict(data, source=relative, max_bytes=MAX_JSON_BYTES), source=relative)
    except RingwardError as exc:
        loaded.problems.append(_file_problem(relative, 'a reference JSON store {"items": [...]}', _after_source(exc)))
        return
    target = loaded.evidence if kind is SourceKind.EVIDENCE_JSON else loaded.approvals
    for index, item in enumerate(items):
        target.append((relative, source.sha256, f"items[{index}]", index, item))
    if kind is SourceKind.EVIDENCE_JSON:
        loaded.evidence_found += len(items)
    else:
        loaded.approvals_found += len(items)


def _after_source(exc: RingwardError) -> str:
    """The reason part of an error line that starts with the file name."""
    return exc.message.split(": ", 1)[-1] if ": " in exc.message else exc.message


def _sqlite_candidates(loaded: _Loaded) -> list[str]:
    base = loaded.root / REFERENCE_DIR
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(SQLITE_SUFFIXES):
                found.append((Path(dirpath) / name).relative_to(loaded.root).as_posix())
    if len(found) > MAX_SQLITE_FILES:
        raise InputError(
            f"--from {loaded.root}: {len(found)} SQLite files under {REFERENCE_DIR}/, "
            f"expected at most {MAX_SQLITE_FILES}"
        )
    return found


def _table_columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[str, bool, bool]]:
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return {str(r[1]): (str(r[2]).upper(), bool(r[3]), bool(r[5])) for r in rows}


def _schema_problem(
    relative: str, table: str, columns: dict[str, tuple[str, bool, bool]], wanted: dict[str, tuple[str, bool, bool]]
) -> RecordProblem | None:
    missing = [name for name in wanted if name not in columns]
    if missing:
        return _file_problem(
            relative,
            f"table {table} with the reference's columns ({', '.join(wanted)})",
            f"no column {', '.join(missing)}",
        )
    return None


def _load_sqlite(loaded: _Loaded, relative: str) -> None:
    path = loaded.root / relative
    try:
        info = os.lstat(path)
    except OSError as exc:
        loaded.problems.append(_file_problem(relative, "a readable regular file", exc.strerror or str(exc)))
        return
    if not stat.S_ISREG(info.st_mode):
        loaded.ignored.append(f"{relative}: not a regular file")
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as probe:
            magic = probe.read(len(SQLITE_MAGIC))
    except OSError as exc:
        loaded.problems.append(_file_problem(relative, "a readable regular file", describe_os_error(exc)))
        return
    if magic != SQLITE_MAGIC:
        loaded.ignored.append(f"{relative}: not a SQLite database")
        return
    for suffix, what in (("-wal", "write-ahead log"), ("-journal", "rollback journal")):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_size > 0:
            loaded.problems.append(
                _file_problem(
                    relative,
                    "a database at rest (stop the reference's writers, then re-run)",
                    f"a non-empty {what} {side.name} (changes not yet in the database file)",
                )
            )
            return
    read = _read(loaded, relative, MAX_SQLITE_BYTES, ())
    if read is None:
        return
    data, source = read
    conn = sqlite3.connect(":memory:")
    try:
        try:
            conn.deserialize(data)
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            loaded.problems.append(_file_problem(relative, "a SQLite database", f"an unreadable one ({exc})"))
            return
        kinds: list[SourceKind] = []
        for table, wanted, kind in (
            (EVIDENCE_TABLE, EVIDENCE_COLUMNS, SourceKind.EVIDENCE_SQLITE),
            (APPROVALS_TABLE, APPROVAL_COLUMNS, SourceKind.APPROVALS_SQLITE),
        ):
            if table not in tables:
                continue
            kinds.append(kind)
            problem = _schema_problem(relative, table, _table_columns(conn, table), wanted)
            if problem is not None:
                loaded.problems.append(problem)
                continue
            _load_rows(loaded, conn, relative, source.sha256, table, wanted, kind)
    finally:
        conn.close()
    if not kinds:
        loaded.sources.remove(source)
        loaded.ignored.append(f"{relative}: no {EVIDENCE_TABLE} or {APPROVALS_TABLE} table")
        return
    loaded.sources[loaded.sources.index(source)] = source.model_copy(update={"kinds": tuple(kinds)})


def _load_rows(
    loaded: _Loaded,
    conn: sqlite3.Connection,
    relative: str,
    sha256: str,
    table: str,
    wanted: dict[str, tuple[str, bool, bool]],
    kind: SourceKind,
) -> None:
    names = list(wanted)
    query = f"SELECT rowid, {', '.join(names)} FROM {table} ORDER BY rowid"  # noqa: S608 - fixed names
    target = loaded.evidence if kind is SourceKind.EVIDENCE_SQLITE else loaded.approvals
    count = 0
    for row in conn.execute(query):
        count += 1
        rowid = int(row[0])
        columns = dict(zip(names, row[1:], strict=True))
        record = f"{table}[rowid={rowid}]"
        payload, problems = parse_row_payload(columns["payload"], source=relative, record=record, index=rowid)
        if payload is not None:
            problems = check_row_against_payload(columns, payload, source=relative, record=record, index=rowid)
        if problems or payload is None:
            loaded.problems.extend(problems)
            if kind is SourceKind.EVIDENCE_SQLITE:
                loaded.evidence_skipped += 1
            else:
                loaded.approvals_skipped += 1
            continue
        target.append((relative, sha256, record, rowid, payload))
    if kind is SourceKind.EVIDENCE_SQLITE:
        loaded.evidence_found += count
    else:
        loaded.approvals_found += count


def _load_connectors(loaded: _Loaded, relative: str) -> None:
    read = _read(loaded, relative, MAX_CONNECTOR_BYTES, (SourceKind.CONNECTORS,))
    if read is None:
        return
    data, source = read
    loaded.connectors_source = source
    try:
        document = load_config_document(data, source=relative)
        loaded.connectors = migrate_connectors(document, source=relative)
    except RingwardError as exc:
        loaded.problems.append(_file_problem(relative, "a reference connector file (§7.2)", _after_source(exc)))
        return
    loaded.problems.extend(loaded.connectors.problems)


def load_installation(path: Path) -> _Loaded:
    """Read every store and the connector file of the installation at ``path``.

    Raises:
        InputError: ``path`` is unusable or holds no reference store at all.
    """
    root = locate_installation(path)
    loaded = _Loaded(root=root)
    for relative in EVIDENCE_JSON_PATHS:
        if _exists(root, relative):
            _load_json_store(loaded, relative, SourceKind.EVIDENCE_JSON)
    for relative in APPROVALS_JSON_PATHS:
        if _exists(root, relative):
            _load_json_store(loaded, relative, SourceKind.APPROVALS_JSON)
    for relative in _sqlite_candidates(loaded):
        _load_sqlite(loaded, relative)
    connector_files = [r for r in CONNECTOR_PATHS if _exists(root, r)]
    if len(connector_files) > 1:
        loaded.problems.append(
            _file_problem(
                connector_files[1],
                f"one connector file (the reference reads {connector_files[0]})",
                f"also {', '.join(connector_files[1:])} (not read)",
            )
        )
    if connector_files:
        _load_connectors(loaded, connector_files[0])
    if not loaded.sources and not loaded.problems:
        looked = ", ".join([*EVIDENCE_JSON_PATHS, *APPROVALS_JSON_PATHS, *CONNECTOR_PATHS])
        raise InputError(
            f"--from {path}: not a reference installation ({REFERENCE_DIR}/ holds no evidence store, approval store "
            f"or connector file; looked for {looked} and SQLite files with an {EVIDENCE_TABLE} or "
            f"{APPROVALS_TABLE} table)"
        )
    return loaded


# --- importing -------------------------------------------------------------------------------------


def migrate_reference(
    store: Store,
    source: Path,
    *,
    actor: str,
    connectors_output: Path | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> MigrationReport:
    """Import the reference installation at ``source`` (see the module docstring).

    Raises:
        InputError: ``source`` is not a usable reference installation, or the output is impossible.
    """
    output = connectors_output or default_connectors_output()
    check_output_parent(output, option="--connectors-output")
    _check_output_file(output)
    moment = now or _utcnow()
    loaded = load_installation(source)
    import_id = sources_digest(loaded.sources)

    evidence_keyed: list[tuple[str, EvidenceDraft]] = []
    for relative, sha256, record, index, item in loaded.evidence:
        problems = check_metadata_item(item, source=relative, record=record, index=index)
        if problems:
            loaded.problems.extend(problems)
            loaded.evidence_skipped += 1
            continue
        origin = ImportOrigin(source=relative, source_sha256=sha256, record=record, import_id=import_id)
        try:
            evidence_keyed.append(migrated_metadata_draft(item, actor=actor, origin=origin))
        except InputError as exc:  # a limit the item checks do not know (payload size)
            loaded.evidence_skipped += 1
            loaded.problems.append(
                RecordProblem(
                    source=relative, record=record, index=index, expected="an importable record", found=exc.message
                )
            )

    approvals: list[tuple[Approval, dict[str, Any], str]] = []
    first_seen: dict[str, tuple[bytes, str]] = {}
    for relative, sha256, record, index, item in loaded.approvals:
        problems = check_approval_item(item, source=relative, record=record, index=index)
        if not problems:
            canonical = dumps_canonical(item)
            seen = first_seen.get(item["approval_id"])
            if seen is not None and seen[0] != canonical:
                problems = [
                    RecordProblem(
                        source=relative,
                        record=record,
                        index=index,
                        field="approval_id",
                        expected=f"the same record as {seen[1]} (same approval id)",
                        found=f"a different record with id {found_text(item['approval_id'])}",
                    )
                ]
            elif seen is None:
                first_seen[item["approval_id"]] = (canonical, f"{relative} {record}")
        if problems:
            loaded.problems.extend(problems)
            loaded.approvals_skipped += 1
            continue
        origin = ImportOrigin(source=relative, source_sha256=sha256, record=record, import_id=import_id)
        try:
            approvals.append((migrated_approval(item, origin=origin), item, f"{relative} {record}"))
        except InputError as exc:
            loaded.approvals_skipped += 1
            loaded.problems.append(
                RecordProblem(
                    source=relative, record=record, index=index, expected="an importable approval", found=exc.message
                )
            )

    connector_result, connector_bytes = _plan_connectors(loaded, output)
    counts = {"evidence": loaded.evidence_found, "approvals": loaded.approvals_found}
    if loaded.connectors is not None:
        counts["connectors"] = loaded.connectors.entries
    import_key, import_draft = import_record_draft(
        source_dir=str(loaded.root.resolve()),
        sources=loaded.sources,
        counts=counts,
        problems=loaded.problems,
        actor=actor,
    )

    if dry_run:
        with store.reading() as conn:
            present = existing_import_keys(conn, [import_key, *(k for k, _ in evidence_keyed)])
        fresh_keys = {k for k, _ in evidence_keyed if k not in present}
        # the same approval in two stores is imported once (the second is "already present")
        new_approvals = list(
            dict.fromkeys(a.approval_id for a, _, _ in approvals if not _approval_exists(store, a.approval_id))
        )
        evidence = StoreResult(
            found=loaded.evidence_found,
            imported=len(fresh_keys),
            already_present=len(evidence_keyed) - len(fresh_keys),
            skipped=loaded.evidence_skipped,
        )
        approval_result = StoreResult(
            found=loaded.approvals_found,
            imported=len(new_approvals),
            already_present=len(approvals) - len(new_approvals),
            skipped=loaded.approvals_skipped,
            ids=list(new_approvals),
        )
        opening = ImportRecordResult(
            import_id=import_id, status="already-recorded" if import_key in present else "would-record"
        )
        return _report(loaded, True, opening, evidence, approval_result, connector_result)

    results = store.append_absent([(import_key, import_draft), *evidence_keyed], now=moment)
    opened = results[0]
    opening = ImportRecordResult(
        import_id=import_id,
        status="recorded" if opened is not None else "already-recorded",
        record_id=None if opened is None else opened.id,
    )
    added = [r.id for r in results[1:] if r is not None]
    evidence = StoreResult(
        found=loaded.evidence_found,
        imported=len(added),
        already_present=len(results) - 1 - len(added),
        skipped=loaded.evidence_skipped,
        ids=list(added),
    )
    inserted: list[int | str] = []
    for approval, item, _where in approvals:
        done, _ = store.approvals.insert_imported(
            approval, imported_json=dumps_canonical(item).decode("utf-8"), actor=actor, now=moment
        )
        if done:
            inserted.append(approval.approval_id)
    approval_result = StoreResult(
        found=loaded.approvals_found,
        imported=len(inserted),
        already_present=len(approvals) - len(inserted),
        skipped=loaded.approvals_skipped,
        ids=inserted,
    )
    if connector_bytes is not None and loaded.connectors_source is not None and loaded.connectors is not None:
        connector_result = _write_connectors(
            store, loaded, output, connector_bytes, connector_result, actor=actor, now=moment
        )
    return _report(loaded, False, opening, evidence, approval_result, connector_result)


def _check_output_file(output: Path) -> None:
    """``--connectors-output`` must be absent or a regular file (it is compared, never overwritten).

    Raises:
        InputError: a directory, a symbolic link (loop or not) or a special file is there.
    """
    try:
        info = os.lstat(output)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"--connectors-output {output}: cannot write ({describe_os_error(exc)})") from exc
    if stat.S_ISLNK(info.st_mode):
        try:
            os.stat(output)
            reason = "a symbolic link; refusing to write through it"
        except OSError as exc:
            reason = describe_os_error(exc)
        raise InputError(f"--connectors-output {output}: {reason}")
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"--connectors-output {output}: is a directory, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"--connectors-output {output}: not a regular file")


def _approval_exists(store: Store, approval_id: str) -> bool:
    try:
        store.approvals.get(approval_id)
    except ApprovalNotFoundError:
        return False
    return True


def _plan_connectors(loaded: _Loaded, output: Path) -> tuple[ConnectorResult, bytes | None]:
    migration, source = loaded.connectors, loaded.connectors_source
    if migration is None or source is None:
        return ConnectorResult(source=None if source is None else source.path), None
    data = render_connectors_yaml(migration, source=source.path, source_sha256=source.sha256)
    base = ConnectorResult(
        source=source.path,
        output=str(output),
        destinations=[str(d["name"]) for d in migration.destinations],
        references=list(migration.references),
        notes=list(migration.notes),
    )
    if data is None:
        return base.model_copy(update={"status": "nothing-to-write", "output": None}), None
    existing = _read_existing(output)
    if existing is None:
        return base.model_copy(update={"status": "would-write"}), data
    if existing == data:
        return base.model_copy(update={"status": "unchanged"}), data
    loaded.problems.append(_exists_differs(output))
    return base.model_copy(update={"status": "exists-differs"}), None


def _exists_differs(output: Path) -> RecordProblem:
    return _file_problem(
        str(output),
        "no file there, or the same migrated connectors.yaml (a re-run)",
        "a different file (left unchanged; edit it by hand or pass --connectors-output elsewhere)",
    )


def _read_existing(output: Path) -> bytes | None:
    if not os.path.lexists(output):
        return None
    return read_capped(output, MAX_CONNECTOR_BYTES * 4, source=f"--connectors-output {output}")


def _write_connectors(
    store: Store,
    loaded: _Loaded,
    output: Path,
    data: bytes,
    planned: ConnectorResult,
    *,
    actor: str,
    now: datetime,
) -> ConnectorResult:
    status = planned.status
    if status == "would-write":
        try:
            atomic_write(output, data, mode=0o600, overwrite=False)
            status = "written"
        except OutputExistsError:
            # another run wrote it between the check and now: the same bytes are a re-run
            if _read_existing(output) == data:
                status = "unchanged"
            else:
                loaded.problems.append(_exists_differs(output))
                return planned.model_copy(update={"status": "exists-differs"})
    assert loaded.connectors_source is not None
    digest = hashlib.sha256(data).hexdigest()
    draft = EvidenceDraft(
        kind=CONNECTORS_KIND,
        actor=actor,
        subject=EvidenceSubject(status="imported", provider=ORIGIN, success=not loaded.connectors.problems
                                if loaded.connectors is not None else None),
        payload={
            "schema_version": CONNECTORS_SCHEMA,
            "origin": ORIGIN,
            "verified": False,
            "source": {"path": loaded.connectors_source.path, "sha256": loaded.connectors_source.sha256},
            "output": {"path": str(output.resolve()), "sha256": digest, "size_bytes": len(data)},
            "destinations": planned.destinations,
            # names only: a secret value is never in evidence (none was copied anywhere)
            "secret_references": [r.model_dump(mode="json") for r in planned.references],
            "skipped": [p.line() for p in (loaded.connectors.problems if loaded.connectors else ())],
        },
    )
    (recorded,) = store.append_absent([(f"{CONNECTORS_KIND}:{digest}", draft)], now=now)
    return planned.model_copy(update={"status": status, "evidence_id": None if recorded is None else recorded.id})


def _report(
    loaded: _Loaded,
    dry_run: bool,
    record: ImportRecordResult,
    evidence: StoreResult,
    approvals: StoreResult,
    connectors: ConnectorResult,
) -> MigrationReport:
    return MigrationReport(
        source_dir=str(loaded.root),
        dry_run=dry_run,
        sources=sorted(loaded.sources, key=lambda s: s.path),
        ignored=loaded.ignored,
        import_record=record,
        evidence=evidence,
        approvals=approvals,
        connectors=connectors,
        problems=loaded.problems,
    )
