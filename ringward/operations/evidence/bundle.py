"""Evidence bundles: an operation's output files under the evidence root, with a checksums.txt,
and one hash-chained record in the store pointing at them."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ringward.core.common.checksums import render_checksums
from ringward.core.common.paths import check_relative_name
from ringward.core.evidence.records import EvidenceArtifact, EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.settings import evidence_root


def write_evidence_bundle(
    *,
    kind: str,
    actor: str,
    payload: dict[str, Any],
    files: Mapping[str, bytes],
    subject: EvidenceSubject,
    flow_run_id: str | None = None,
    root: Path | None = None,
    store: Any = None,
    now: datetime | None = None,
) -> EvidenceRecord:
    """Write ``files`` + ``checksums.txt`` into a new bundle directory (assembled under a
    temporary name, then renamed), then append the evidence record. Returns the record."""
    base = root or evidence_root()
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    relative = f"{kind}/{moment:%Y/%m/%d}/{moment:%H%M%S}-{uuid.uuid4().hex[:12]}"
    final = base / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=final.parent))
    artifacts = []
    try:
        digests: dict[str, str] = {}
        for name in sorted(files):
            check_relative_name(name, source="evidence file")
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = files[name]
            target.write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
            artifacts.append(EvidenceArtifact(name=name, sha256=digests[name], size_bytes=len(data)))
        (staging / "checksums.txt").write_bytes(render_checksums(digests))
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    draft = EvidenceDraft(
        kind=kind,
        actor=actor,
        subject=subject,
        flow_run_id=flow_run_id,
        payload=payload,
        bundle_dir=relative,
        artifacts=tuple(artifacts),
    )
    if store is not None:
        appended: EvidenceRecord = store.append(draft)
        return appended
    from ringward.store import open_store

    with open_store() as opened:
        return opened.append(draft)
