"""Pieces the playbooks share: reading the evidence chain and its bundles, the channel-hold step (the
promotion domain's hold), the incident step (the incidents domain's open) and package digests."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ringward.core.errors import InputError, StateError
from ringward.core.evidence.query import MAX_PAGE_SIZE, EvidenceQuery
from ringward.core.evidence.records import EvidenceRecord
from ringward.core.incidents import playbooks as pb
from ringward.core.incidents.playbooks import PlaybookRun, StepStatus
from ringward.core.promotion.channels import check_channel_name
from ringward.operations.common.files import read_capped
from ringward.operations.incidents.playbook_runs import Context, StepResult

if TYPE_CHECKING:
    from ringward.core.incidents.record import IncidentSeverity, IncidentType
    from ringward.core.trust.root import TrustRoot
    from ringward.store import Store

#: evidence records read per kind when a playbook searches the chain (newest first)
MAX_SCAN: Final = 20_000
MAX_SMALL_FILE: Final = 4 * 1024 * 1024
HOLD_MARK: Final = "[ringward playbook]"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def scan(store: Store, kind: str, *, status: str | None = None, limit: int = MAX_SCAN) -> Iterator[EvidenceRecord]:
    """Records of ``kind`` (and subject ``status``), newest first, at most ``limit``."""
    before: int | None = None
    seen = 0
    while seen < limit:
        page = store.search_evidence(EvidenceQuery(kind=kind, status=status, before_id=before, with_total=False,
                                                   limit=min(MAX_PAGE_SIZE, limit - seen)))
        for record in page.items:
            seen += 1
            yield record
        if page.next_before_id is None or not page.items:
            return
        before = page.next_before_id


def bundle_path(record: EvidenceRecord, name: str) -> Path | None:
    """A bundle file of ``record`` whose bytes still match the recorded digest, else None."""
    from ringward.settings import evidence_root

    artifact = next((a for a in record.artifacts if a.name == name), None)
    if record.bundle_dir is None or artifact is None:
        return None
    path = evidence_root() / record.bundle_dir / name
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None
    return path if digest == artifact.sha256 else None


def bundle_bytes(record: EvidenceRecord, name: str) -> bytes | None:
    path = bundle_path(record, name)
    if path is None or path.stat().st_size > MAX_SMALL_FILE:
        return None
    return path.read_bytes()


def checksums_digest(package_dir: Path) -> str | None:
    """``sha256:`` of a package's ``checksums.txt`` (what channels record), None when unreadable."""
    path = package_dir / "checksums.txt"
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return "sha256:" + hashlib.sha256(read_capped(path, MAX_SMALL_FILE, source=str(path))).hexdigest()
    except (InputError, OSError):
        return None


def load_root(path: Path) -> TrustRoot:
    from ringward.operations.promotion.channel_ops import load_trust_root_file

    return load_trust_root_file(path)


def check_channels(names: Sequence[str], *, option: str = "--channel") -> list[str]:
    return sorted({check_channel_name(n, option=option) for n in names})


# --- holds -----------------------------------------------------------------------------------------------


def hold_plan(ctx: Context, channels: Sequence[str], reason: str) -> dict[str, Any] | StepResult:
    """The hold step's plan (the channels and the reason), or nothing to do when no channel is named
    or every one is held already."""
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    names = sorted(set(channels))
    if not names:
        return StepResult(StepStatus.SKIPPED, {"reason": "no channel to hold", "held": [], "already_held": {}})
    repo = channel_repo(ctx.store)
    held = {n: repo.get(n).hold for n in names}
    if all(h is not None for h in held.values()):
        return StepResult(StepStatus.DONE, {
            "held": [], "already_held": {n: {"by": h.actor, "reason": h.reason} for n, h in held.items() if h},
            "note": "every channel was held already; nothing to approve"})
    return {"channels": names, "reason": reason, "summary": f"hold {', '.join(names)}"}


def hold_execute(ctx: Context, run: PlaybookRun, plan: dict[str, Any], _prepared: Any) -> StepResult:
    """Hold every planned channel not held yet (a hold someone else placed is left as it is)."""
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    repo = channel_repo(ctx.store)
    held: list[str] = []
    already: dict[str, dict[str, str]] = {}
    ids: list[int] = []
    for name in plan["channels"]:
        current = repo.get(name).hold
        if current is not None:
            already[name] = {"by": current.actor, "reason": current.reason}
            continue
        try:
            _, record = repo.hold(name, actor=ctx.actor, reason=plan["reason"], now=ctx.now,
                                  flow_run_id=ctx.flow_run_id)
        except StateError:  # held meanwhile by someone else
            state = repo.get(name)
            if state.hold is not None:
                already[name] = {"by": state.hold.actor, "reason": state.hold.reason}
            continue
        held.append(name)
        ids.append(record.id)
    return StepResult(StepStatus.DONE, {"held": held, "already_held": already}, tuple(ids))


def hold_reason(run: PlaybookRun, why: str) -> str:
    return f"{why} (playbook {run.playbook.value} {run.run_id}) {HOLD_MARK}"[:4096]


# --- incidents -------------------------------------------------------------------------------------------


def open_incident(ctx: Context, run: PlaybookRun, *, type: IncidentType, severity: IncidentSeverity, subject: str,
                  packages: Sequence[str], channels: Sequence[str], note: str) -> StepResult:
    """Open (or find: dedup key ``playbook:<run id>``) the run's incident, linking the package digests
    and channels, with a note naming the run and what it found."""
    from ringward.core.incidents.record import MAX_LINKS, IncidentLinks
    from ringward.operations.incidents import incident_ops

    digests = sorted({d for d in packages if _DIGEST.match(d)})
    names = sorted(set(channels))
    room = MAX_LINKS - len(names[:100])
    links = IncidentLinks(packages=tuple(digests[:room]), channels=tuple(names[:100]))
    opened = incident_ops.open_incident(ctx.store, type=type, severity=severity,
                                        summary=pb.incident_summary(run.playbook, run.run_id, subject), links=links,
                                        dedup_key=f"playbook:{run.run_id}", actor=ctx.actor, now=ctx.now,
                                        flow_run_id=ctx.flow_run_id)
    incident_id = opened["incident"]["incident_id"]
    ids = [opened["evidence_id"]] if opened["evidence_id"] else []
    if opened["changed"]:
        noted = incident_ops.update(ctx.store, incident_id, actor=ctx.actor, now=ctx.now, note=note[:4000],
                                    flow_run_id=ctx.flow_run_id)
        ids.append(noted["evidence_id"])
    return StepResult(StepStatus.DONE, {"incident_id": incident_id, "opened": bool(opened["changed"]),
                                        "links": links.model_dump(mode="json"),
                                        "links_truncated": len(digests) > room or len(names) > 100},
                      tuple(int(i) for i in ids))
