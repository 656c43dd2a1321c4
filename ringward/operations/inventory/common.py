"""Helpers shared by the inventory operations: output directories, evidence bundles, time options."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.errors import OutputExistsError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord, EvidenceSubject

if TYPE_CHECKING:
    from ringward.store import Store


#: longest age or window an inventory option accepts
MAX_AGE = timedelta(days=366)


def parse_age(text: str, *, option: str) -> timedelta:
    """``90m``, ``24h``, ``7d``, ``2w`` -> timedelta (positive, at most a year)."""
    from ringward.core.approvals.rules import parse_duration

    return parse_duration(text, option=option, maximum=MAX_AGE)


def hours(value: timedelta) -> float:
    return round(value.total_seconds() / 3600, 4)


def evidence_ref(record: EvidenceRecord) -> dict[str, Any]:
    return {"evidence_id": str(record.id), "bundle_dir": record.bundle_dir, "record_hash": record.record_hash}


def write_bundle(kind: str, *, actor: str, payload: dict[str, Any], files: Mapping[str, bytes],
                 subject: EvidenceSubject, flow_run_id: str | None, now: datetime) -> tuple[EvidenceDraft, Path]:
    """An evidence bundle written under the evidence root and its record draft (appended by the caller)."""
    from ringward.operations.promotion.channel_ops import bundle_draft

    return bundle_draft(kind, actor=actor, payload=payload, files=files, subject=subject, flow_run_id=flow_run_id,
                        now=now)


def append_bundle(store: Store, kind: str, *, actor: str, payload: dict[str, Any], files: Mapping[str, bytes],
                  subject: EvidenceSubject, flow_run_id: str | None, now: datetime,
                  import_key: str | None = None) -> EvidenceRecord | None:
    """Write the bundle and append its record (insert-or-skip by ``import_key`` when given: None
    means the key was already recorded, and the new bundle is removed again)."""
    draft, bundle = write_bundle(kind, actor=actor, payload=payload, files=files, subject=subject,
                                 flow_run_id=flow_run_id, now=now)
    try:
        if import_key is None:
            return store.append(draft, now=now)
        (record,) = store.append_absent([(import_key, draft)], now=now)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    if record is None:
        shutil.rmtree(bundle, ignore_errors=True)
    return record


def write_output_dir(output: Path, files: Mapping[str, bytes], *, identical: str) -> str:
    """Write ``files`` into ``output`` atomically (staged, then renamed). An existing directory whose
    ``identical`` file has the same bytes is left as it is (``unchanged``); any other existing
    non-empty output is refused."""
    from ringward.operations.promotion.channel_ops import commit_directory, stage_directory, write_files

    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise OutputExistsError(f"--output {output}: exists and is not a directory; refusing to overwrite")
    if output.is_dir() and any(output.iterdir()):
        current = output / identical
        if current.is_file() and current.read_bytes() == files[identical]:
            return "unchanged"
        raise OutputExistsError(f"--output {output}: directory holds other content; refusing to overwrite")
    staging = stage_directory(output)
    try:
        write_files(staging, files)
        if output.is_dir():
            output.rmdir()
        commit_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return "written"
