"""Unauthorized release: detect -> open an ``unauthorized-release`` incident -> hold the channel.

- ``detect``: the channel's endpoints, from its latest ingested observations (or ``--observations``):
  every version they run that was never approved and promoted on the channel (its promotion
  history, current release and high-water mark) is a finding. Each ``--package`` found on them is
  verified against the trust root; its SLSA provenance builder must be one of the trust root's
  trusted builders and, with ``--trusted-source``, its source repository one of those; a package
  that does not verify for another reason, or whose version was never promoted on the channel, is a
  finding too.
- ``incident``: one critical ``unauthorized-release`` incident per run (dedup key
  ``playbook:<run id>``) linking the package digests found and the channel; nothing found: skipped.
- ``hold-channel`` (destructive): the promotion domain's hold on the channel; nothing found: skipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

from ringward.core.errors import InputError
from ringward.core.incidents import playbooks as pb
from ringward.core.incidents.playbooks import Finding, FindingReason, PlaybookKind, PlaybookRun, StepStatus
from ringward.operations.incidents import playbook_common as common
from ringward.operations.incidents.playbook_runs import Context, Handler, StepResult

KIND: Final = PlaybookKind.UNAUTHORIZED_RELEASE


def _latest_ingestion(store: Any, channel: str) -> Any:
    """The newest ingestion recorded for ``channel``, or None."""
    from ringward.core.evidence.query import EvidenceQuery
    from ringward.core.inventory.observations import KIND_INGESTION

    page = store.search_evidence(EvidenceQuery(kind=KIND_INGESTION, status="ingested", channel=channel, limit=1,
                                               with_total=False))
    return page.items[0] if page.items else None


def package_digests(packages: list[Path]) -> dict[str, Path]:
    """``sha256:<checksums.txt>`` -> package directory for every ``--package``.

    Raises:
        InputError: not a package directory.
    """
    found: dict[str, Path] = {}
    for path in packages:
        if not path.is_dir():
            raise InputError(f"--package {path}: not a package directory")
        digest = common.checksums_digest(path)
        if digest is None:
            raise InputError(f"--package {path}: no readable checksums.txt; expected a release package directory")
        found[digest] = path.absolute()
    return found


def inputs(store: Any, *, channel: str, observations: Path | None, packages: list[Path],
           trusted_sources: list[str]) -> dict[str, Any]:
    """The run's identifying inputs (PB1): the channel, the observations (a file's sha256, or the
    latest ingestion of the channel), the package digests and the trusted sources.

    Raises:
        InputError: a malformed channel, no observations, a path that is not a package.
    """
    from ringward.operations.common.files import check_input_path

    (name,) = common.check_channels([channel])
    if observations is not None:
        check_input_path(observations, option="--observations")
        with open(observations, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        source: dict[str, Any] = {"file": str(observations.absolute()), "sha256": digest}
    else:
        record = _latest_ingestion(store, name)
        if record is None:
            raise InputError(f"--channel {name}: no ingested inventory for the channel; ingest one "
                             "(`ringward inventory ingest --channel`) or give --observations FILE")
        source = {"inventory_id": record.payload.get("inventory_id"), "evidence_id": record.id}
    for repo in trusted_sources:
        if not repo.strip() or len(repo) > 512:
            raise InputError(f"--trusted-source: expected a repository (owner/name), found {repo[:80]!r}")
    return {"channel": name, "observations": source, "packages": sorted(package_digests(packages)),
            "trusted_sources": sorted(set(trusted_sources))}


def _observations_path(ctx: Context, run: PlaybookRun) -> Path:
    from ringward.core.inventory.observations import OBSERVATIONS_FILE

    source = run.inputs["observations"]
    if "file" in source:
        path = Path(source["file"])
        with open(path, "rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != source["sha256"]:
                raise InputError(f"--observations {path}: changed since the run started (sha256 "
                                 f"{source['sha256'][:16]}); start a new run for the new file")
        return path
    found = common.bundle_path(ctx.store.get_evidence(int(source["evidence_id"])), OBSERVATIONS_FILE)
    if found is None:
        from ringward.core.errors import EvidenceIntegrityError

        raise EvidenceIntegrityError(f"inventory {source['inventory_id']}: observations file missing or altered in "
                                     "its evidence bundle")
    return found


def _provenance(package: Path) -> tuple[str | None, str | None, str | None]:
    """(version, builder id, source repository) as the package's provenance states them (read, not
    trusted: it is judged, not used)."""
    version = None
    evidence = package / "release-evidence.json"
    if evidence.is_file():
        try:
            version = json.loads(evidence.read_bytes()).get("version")
        except ValueError:
            version = None
    for path in sorted(package.glob("*.provenance.intoto.json")):
        try:
            statement = json.loads(path.read_bytes())
            predicate = statement["predicate"]
            builder = predicate["runDetails"]["builder"]["id"]
            repository = predicate["buildDefinition"]["externalParameters"].get("repository")
            return version, builder, repository
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return version, None, None


def detect(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.core.errors import UntrustedBuilderError
    from ringward.operations.inventory.observations_file import validated_endpoints
    from ringward.operations.promotion.channel_ops import channels as channel_repo
    from ringward.operations.release.verify import verify_package

    channel = run.inputs["channel"]
    observed: dict[str, list[str]] = {}
    unversioned = 0
    for endpoint in validated_endpoints(_observations_path(ctx, run)):
        version = endpoint.get("installed_version")
        if isinstance(version, str) and version:
            observed.setdefault(version, []).append(str(endpoint.get("endpoint_id")))
        else:
            unversioned += 1
    state = channel_repo(ctx.store).get(channel)
    promoted = sorted({r.version for r in (*state.history, state.current, state.high_water) if r is not None})
    findings: list[Finding] = pb.never_promoted(observed, promoted, channel=channel)
    root = common.load_root(Path(ctx.options["trust_root"]))
    paths = {str(k): Path(v) for k, v in dict(ctx.options.get("packages") or {}).items()}
    checked = []
    for digest in run.inputs["packages"]:
        path = paths.get(digest)
        if path is None or common.checksums_digest(path) != digest:
            raise InputError(f"--package: the package with checksums digest {digest} was not given (or changed) "
                             "on this run; give the same packages as when the run started")
        version, builder, repository = _provenance(path)
        verification = verify_package(path, root, now=ctx.now)
        problems = [e for e in verification.errors if e.code != UntrustedBuilderError.code]
        found = pb.provenance_findings(version=str(version), package_digest=digest, builder=builder,
                                       repository=repository, trusted_builders=root.trusted_builders,
                                       trusted_sources=run.inputs["trusted_sources"])
        if problems:
            found.append(Finding(reason=FindingReason.UNVERIFIED_PACKAGE, version=version, package_digest=digest,
                                 detail=f"{path}: {problems[0].message}"[:1000]))
        if version is not None and not any(pb.same_version(version, p) for p in promoted):
            count = sum(len(v) for k, v in observed.items() if pb.same_version(k, version))
            found.append(Finding(reason=FindingReason.NEVER_PROMOTED, version=version, package_digest=digest,
                                 endpoint_count=count,
                                 detail=f"package {path} ({version}) was never approved and promoted on channel "
                                        f"{channel}"))
        findings.extend(found)
        checked.append({"package_dir": str(path), "digest": digest, "version": version, "builder": builder,
                        "repository": repository, "verified": verification.valid,
                        "findings": [f.reason.value for f in found]})
    unique = list({f.key: f for f in findings}.values())
    return StepResult(StepStatus.DONE, {
        "channel": channel, "findings": [f.model_dump(mode="json") for f in unique], "finding_count": len(unique),
        "observed_versions": {v: len(e) for v, e in sorted(observed.items())}, "unversioned_endpoints": unversioned,
        "promoted_versions": promoted, "packages": checked})


def incident(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.core.incidents.record import IncidentSeverity, IncidentType

    detected = run.step("detect").output
    findings = detected.get("findings", [])
    if not findings:
        return StepResult(StepStatus.SKIPPED, {"reason": "nothing unauthorized found"})
    channel = run.inputs["channel"]
    described = ", ".join(sorted({f"{f['reason']} {f.get('version') or '?'}" for f in findings}))
    digests = [f["package_digest"] for f in findings if f.get("package_digest")]
    note = (f"playbook unauthorized-release run {run.run_id}; detection evidence "
            f"{', '.join(str(i) for i in run.step('detect').evidence_ids)}; findings: "
            + "; ".join(f["detail"] for f in findings[:20]))
    return common.open_incident(ctx, run, type=IncidentType.UNAUTHORIZED_RELEASE, severity=IncidentSeverity.CRITICAL,
                                subject=f"{len(findings)} unauthorized release finding(s) on channel {channel}: "
                                        f"{described}",
                                packages=digests, channels=[channel], note=note)


def hold_plan(ctx: Context, run: PlaybookRun) -> dict[str, Any] | StepResult:
    if not run.step("detect").output.get("findings"):
        return StepResult(StepStatus.SKIPPED, {"reason": "nothing unauthorized found; the channel is not held"})
    return common.hold_plan(ctx, [run.inputs["channel"]], common.hold_reason(run, "unauthorized release found"))


HANDLERS: Final = {
    "detect": Handler(run=detect),
    "incident": Handler(run=incident),
    "hold-channel": Handler(plan=hold_plan, execute=common.hold_execute),
}
