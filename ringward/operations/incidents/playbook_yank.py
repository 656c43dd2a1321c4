"""Release yank: locate the version on its channels -> yank it (and hold the channels) -> reconcile the
fleet's latest observations against it -> open remediation for the endpoints running it.

- ``locate``: the channels whose promotion history carries the version (or those named with
  ``--channel``), its checksums digest (``--digest``, else the one those histories record) and the
  binaries that digest stands for: the ``checksums.txt`` whose sha256 *is* the digest, read from
  ``--package`` or from a package / verification evidence bundle (content-addressed, so it needs no
  signature to be trusted for this).
- ``yank`` (destructive): the promotion domain marks the version yanked on every channel (CH5: it
  is never requested, exported, published or rolled back to again; the high-water mark stays, so
  an older version is not promoted in its place) and holds each channel not held yet (exports and
  publications stop), one ``release-channel-state`` record per channel.
- ``reconcile``: the latest ingested observations of each (provider, channel) of those channels
  (and unassigned ones): the endpoints running the yanked release (its version, or one of its
  binaries); with ``--replacement`` (the release endpoints must run instead, verified in full) the
  inventory domain's reconciliation runs against it and records its report.
- ``remediate``: for each reconciliation in which endpoints run the yanked release, a signed
  ``rollback`` remediation request (remediation domain; ``--remediation-key``) -- executed later
  under its own approval.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

from ringward.core.errors import InputError
from ringward.core.incidents import playbooks as pb
from ringward.core.incidents.playbooks import PlaybookKind, PlaybookRun, StepStatus
from ringward.core.promotion.channels import ChannelState, normalise_digest
from ringward.operations.incidents import playbook_common as common
from ringward.operations.incidents.playbook_runs import Context, Handler, StepResult, run_dir

KIND: Final = PlaybookKind.YANK
MAX_INGESTIONS: Final = 5000
MAX_ENDPOINTS_LISTED: Final = 200


def _history_digests(state: ChannelState, version: str) -> set[str]:
    entries = [*state.history, *(r for r in (state.current, state.high_water) if r is not None)]
    return {e.digest for e in entries if pb.same_version(e.version, version)}


def inputs(store: Any, *, version: str, digest: str | None, channels: list[str]) -> dict[str, Any]:
    """The run's identifying inputs (PB1): the version, its digest and its channels, resolved from
    the channels' promotion histories when not given.

    Raises:
        InputError: a malformed version, digest or channel; the version on no channel; two digests.
    """
    from ringward.core.common.versions import ReleaseVersion
    from ringward.core.errors import VersionConflictError
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    try:
        ReleaseVersion.parse(version, field="--version")
    except VersionConflictError as exc:
        raise InputError(exc.message) from exc
    wanted = None if digest is None else normalise_digest(digest, field="--digest")
    named = common.check_channels(channels)
    states = {s.channel: s for s in channel_repo(store).list()}
    carrying = {name: _history_digests(state, version) for name, state in states.items()}
    carrying = {name: found for name, found in carrying.items() if found and (wanted is None or wanted in found)}
    chosen = named or sorted(carrying)
    if not chosen:
        raise InputError(f"--version {version}: never promoted on any channel"
                         f"{f' with digest {wanted}' if wanted else ''}; name the channel(s) to yank it on with "
                         "--channel")
    if wanted is None:
        found = set().union(*(carrying.get(name, set()) for name in chosen))
        if len(found) > 1:
            raise InputError(f"--version {version}: promoted with {len(found)} different digests "
                             f"({', '.join(sorted(found))}); choose one with --digest")
        wanted = next(iter(found), None)
    return {"version": version, "digest": wanted, "channels": chosen}


def _binaries(ctx: Context, digest: str | None) -> tuple[dict[str, str], str | None]:
    """The files (name -> sha256) of the checksums.txt whose digest is ``digest``, and where it was read."""
    from ringward.core.common.checksums import parse_checksums
    from ringward.operations.release.release_ops import KIND_PACKAGE, KIND_VERIFY

    if digest is None:
        return {}, None

    def parsed(data: bytes, where: str) -> tuple[dict[str, str], str] | None:
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return None
        return dict(parse_checksums(data, source=where).as_dict()), where

    package = ctx.options.get("package")
    if package:
        path = Path(package) / "checksums.txt"
        got = parsed(path.read_bytes(), str(path)) if path.is_file() else None
        if got is None:
            raise InputError(f"--package {package}: its checksums.txt is not the yanked release's ({digest})")
        return got
    for kind in (KIND_PACKAGE, KIND_VERIFY):
        for record in common.scan(ctx.store, kind, limit=2000):
            data = common.bundle_bytes(record, "package/checksums.txt")
            got = None if data is None else parsed(data, f"evidence {record.id}")
            if got is not None:
                return got
    # the package a promotion request of this digest was made from, if it is still there
    from ringward.core.promotion import channel_request as cr

    for record in common.scan(ctx.store, cr.KIND_REQUEST, status="requested", limit=2000):
        if record.payload.get("subject_digest") != digest or not isinstance(record.payload.get("package_dir"), str):
            continue
        path = Path(record.payload["package_dir"]) / "checksums.txt"
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= common.MAX_SMALL_FILE:
            got = parsed(path.read_bytes(), str(path))
            if got is not None:
                return got
    return {}, None


def locate(ctx: Context, run: PlaybookRun) -> StepResult:
    binaries, source = _binaries(ctx, run.inputs["digest"])
    return StepResult(StepStatus.DONE, {
        "version": run.inputs["version"], "digest": run.inputs["digest"], "channels": run.inputs["channels"],
        "binaries": binaries, "binaries_source": source,
        "note": None if source else "the yanked release's checksums.txt was not found: endpoints are matched by "
                                    "version only (give --package to match binaries too)"})


# --- yank ---------------------------------------------------------------------------------------------------


def yank_plan(ctx: Context, run: PlaybookRun) -> dict[str, Any] | StepResult:
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    repo = channel_repo(ctx.store)
    version = run.inputs["version"]
    states = {name: repo.get(name) for name in run.inputs["channels"]}
    if all(s.yanked_entry(version) is not None and s.hold is not None for s in states.values()):
        return StepResult(StepStatus.DONE, {"yanked": [], "already_yanked": sorted(states), "held": [],
                                            "note": "already yanked and held on every channel; nothing to approve"})
    reason = str(ctx.options.get("reason") or f"release {version} yanked")
    return {"summary": f"yank {version} on {', '.join(sorted(states))} and hold them", "version": version,
            "digest": run.inputs["digest"], "channels": sorted(states),
            "reason": common.hold_reason(run, reason[:1000])}


def yank_execute(ctx: Context, run: PlaybookRun, plan: dict[str, Any], _prepared: Any) -> StepResult:
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    repo = channel_repo(ctx.store)
    yanked: list[str] = []
    already: list[str] = []
    held: list[str] = []
    ids: list[int] = []
    for name in plan["channels"]:
        before = repo.get(name)
        state, record = repo.yank(name, version=plan["version"], digest=plan["digest"], actor=ctx.actor,
                                  reason=plan["reason"], now=ctx.now, and_hold=True, ref=run.run_id,
                                  flow_run_id=ctx.flow_run_id)
        (yanked if before.yanked_entry(plan["version"]) is None else already).append(name)
        if before.hold is None and state.hold is not None:
            held.append(name)
        if record is not None:
            ids.append(record.id)
    marks = {n: repo.get(n).high_water for n in plan["channels"]}
    return StepResult(StepStatus.DONE, {"yanked": yanked, "already_yanked": already, "held": held,
                                        "high_water_kept": {n: m.version if m else None for n, m in marks.items()}},
                      tuple(ids))


# --- reconcile ----------------------------------------------------------------------------------------------


def _latest_ingestions(ctx: Context, channels: list[str]) -> list[Any]:
    from ringward.core.inventory.observations import KIND_INGESTION

    latest: dict[tuple[Any, Any], Any] = {}
    for record in common.scan(ctx.store, KIND_INGESTION, status="ingested", limit=MAX_INGESTIONS):
        key = (record.payload.get("provider"), record.payload.get("channel"))
        if key[1] is not None and key[1] not in channels:
            continue
        latest.setdefault(key, record)
    return sorted(latest.values(), key=lambda r: r.id)


def reconcile(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.core.inventory.observations import OBSERVATIONS_FILE
    from ringward.operations.inventory.observations_file import validated_endpoints
    from ringward.operations.inventory.reconcile import reconcile_inventory

    located = run.step("locate").output
    version, binaries = run.inputs["version"], list(located.get("binaries", {}).values())
    replacement = ctx.options.get("replacement")
    rows: list[dict[str, Any]] = []
    ids: list[int] = []
    total = 0
    for record in _latest_ingestions(ctx, run.inputs["channels"]):
        payload = record.payload
        row: dict[str, Any] = {"inventory_id": payload.get("inventory_id"), "provider": payload.get("provider"),
                               "channel": payload.get("channel"), "ingestion_evidence_id": record.id}
        path = common.bundle_path(record, OBSERVATIONS_FILE)
        if path is None:
            rows.append({**row, "error": "observations file missing or altered in the evidence bundle"})
            continue
        running = [str(e.get("endpoint_id")) for e in validated_endpoints(path)
                   if pb.runs_release(e, version=version, binaries=binaries)]
        total += len(running)
        row.update(running_yanked=len(running), endpoints=running[:MAX_ENDPOINTS_LISTED], reconciliation=None)
        if running and replacement:
            output = run_dir(run.run_id) / "reconcile" / str(payload.get("inventory_id"))
            reconciled = (_existing_report(output) or
                          reconcile_inventory(ctx.store, package_dir=Path(replacement), observations=path,
                                              trust_root=Path(ctx.options["trust_root"]), now=ctx.now,
                                              actor=ctx.actor, output=output, flow_run_id=ctx.flow_run_id))
            row["reconciliation"] = {k: reconciled.get(k) for k in ("reconciliation_id", "drift_status", "report",
                                                                     "drift_item_count")}
            if reconciled.get("evidence"):
                ids.append(int(reconciled["evidence"]["evidence_id"]))
        rows.append(row)
    note = None
    if total and not replacement:
        note = "no --replacement: endpoints running the yanked release are listed, not reconciled"
    return StepResult(StepStatus.DONE, {"running_yanked": total, "ingestions": rows, "replacement": replacement,
                                        "note": note}, tuple(ids))


def _existing_report(output: Path) -> dict[str, Any] | None:
    """A reconciliation this run already wrote (a re-run after a failure later in the step)."""
    import json

    from ringward.core.inventory.reconcile import RECONCILIATION_FILE

    report = output / RECONCILIATION_FILE
    if not report.is_file():
        return None
    document = json.loads(report.read_bytes())
    return {"reconciliation_id": document.get("reconciliation_id"), "drift_status": document.get("drift_status"),
            "report": str(report), "drift_item_count": len(document.get("drift_items") or [])}


# --- remediate ----------------------------------------------------------------------------------------------


def remediate(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.operations.remediation.remediation_ops import request_remediation

    rows = [r for r in run.step("reconcile").output.get("ingestions", []) if r.get("reconciliation")]
    if not rows:
        return StepResult(StepStatus.SKIPPED, {"reason": "no reconciliation with endpoints running the yanked release "
                                                         "(none run it, or no --replacement was given)"})
    key = ctx.options.get("remediation_key")
    if not key:
        raise InputError("--remediation-key: opening remediation requests needs a remediation-role signing key")
    requests: list[dict[str, Any]] = []
    ids: list[int] = []
    attempt = run.step("remediate").attempts + 1
    for row in rows:
        output = run_dir(run.run_id) / "remediation" / str(row["inventory_id"]) / f"attempt-{attempt}"
        opened = request_remediation(ctx.store, reconciliation=Path(row["reconciliation"]["report"]),
                                     strategy="rollback", requester=ctx.actor, signing_key=Path(key),
                                     trust_root=Path(ctx.options["trust_root"]), now=ctx.now,
                                     expires_in=ctx.expires_in, output=output, flow_run_id=ctx.flow_run_id)
        requests.append({"inventory_id": row["inventory_id"], "request_id": opened["request_id"],
                         "approval_id": opened["approval_id"], "attached": opened["attached"],
                         "action_count": opened.get("action_count")})
        ids.append(int(opened["evidence"]["evidence_id"]))
    return StepResult(StepStatus.DONE, {"requests": requests}, tuple(ids))


HANDLERS: Final = {
    "locate": Handler(run=locate),
    "yank": Handler(plan=yank_plan, execute=yank_execute),
    "reconcile": Handler(run=reconcile),
    "remediate": Handler(run=remediate),
}
