"""``ringward advisory create | check | publish``.

``create`` validates every value (CVSS v4 with the ``cvss`` library and the playbook's severity
rule, the purl with ``packageurl-python``, the range with ``univers``), verifies each linked
release package against the pinned trust root, re-verifies each linked rollout directory and
promotion execution, checks each linked evidence record, and writes ``ringward.advisory.v1``
(atomically; an existing file is refused).

``check`` is the completeness gate: it re-verifies every linked package (the release verify
operation), the package documents by digest, every rollout (the rollout check of the promotion
domain) and execution (against the rollout ledger), every delivery and evidence record, and the
advisory's own content, and reports each missing or failing item by name.

``publish`` refuses a high or critical advisory while the gate fails; otherwise it signs the
advisory with a pinned **advisory**-role key, exports OSV (validated against the vendored OSV
schema), a GitHub-Security-Advisory-shaped document and the seed-template text into a new output
directory, indexes the advisory for ``kev check`` and, with ``deliver``, sends one event through
the connector platform.

Evidence: ``security-advisory`` (created), ``security-advisory-gate`` (every gate run, passed or
not), ``security-advisory-publication`` (published, or refused with the gate's problems).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ringward.core.advisories import exports
from ringward.core.advisories.gate import (
    AdvisoryGateError,
    GateItem,
    GateReport,
    ItemStatus,
    content_items,
    recomputed_severity,
    report,
)
from ringward.core.advisories.identity import (
    ecosystem_of,
    in_range,
    osv_events,
    osv_package_name,
    parse_range,
    parse_version,
    product_purl,
    versionless,
)
from ringward.core.advisories.record import (
    ADVISORY_SIGNATURE_SCHEMA,
    EVIDENCE_KINDS,
    AdvisoryLinks,
    AdvisoryRecord,
    AffectedProduct,
    DisclosureTimeline,
    EvidenceItem,
    EvidenceLink,
    ExecutionLink,
    FixReferences,
    PackageDocument,
    RolloutLink,
    parse_advisory,
)
from ringward.core.advisories.severity import Severity, UserSafetyClass, assess_severity
from ringward.core.common.jsonio import dumps_document
from ringward.core.delivery.results import DELIVERY_EVIDENCE_KIND
from ringward.core.errors import (
    BindingMismatchError,
    EvidenceNotFoundError,
    InputError,
    OutputExistsError,
    RingwardError,
    StateError,
    VerificationError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.promotion.signed_payload import sign_payload, verify_signed_payload
from ringward.core.release.package_format import verify_commands
from ringward.core.trust.root import Role, TrustRoot
from ringward.operations.advisories.release import AdvisoryRelease, load_release
from ringward.operations.common.files import atomic_write, check_output_parent, read_capped

if TYPE_CHECKING:
    from ringward.store import Store

KIND_ADVISORY: Final = "security-advisory"
KIND_GATE: Final = "security-advisory-gate"
KIND_PUBLICATION: Final = "security-advisory-publication"
ADVISORY_FILE: Final = "advisory.json"
OSV_FILE: Final = "advisory.osv.json"
GHSA_FILE: Final = "advisory.ghsa.json"
TEXT_FILE: Final = "advisory.md"
GATE_FILE: Final = "advisory-gate.json"
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
#: severities that may not be published while the gate fails
GATED: Final = frozenset({Severity.HIGH, Severity.CRITICAL})


def _root(trust_root: Path) -> TrustRoot:
    from ringward.operations.promotion.channel_ops import load_trust_root_file

    return load_trust_root_file(trust_root)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- links ---------------------------------------------------------------------------------------------


def _rollout_link(rollout_dir: Path, root: TrustRoot, now: datetime, packages: dict[str, AdvisoryRelease]
                  ) -> RolloutLink:
    from ringward.operations.promotion.rollout_capture import check_rollout

    if not rollout_dir.is_dir():
        raise InputError(f"--rollout {rollout_dir}: rollout directory does not exist")
    checked = check_rollout(rollout_dir, root, now=now)
    version = checked.evidence.release.version
    if version not in packages:
        raise BindingMismatchError(f"--rollout {rollout_dir}: rolls out release {version}, which no --package links")
    return RolloutLink(path=str(checked.rollout_dir), rollout_id=checked.evidence.rollout_id, release_version=version,
                       evidence_sha256=checked.evidence_sha256)


def _load_execution(path: Path) -> tuple[Path, bytes, Any]:
    from ringward.core.promotion import rollout as ro

    file = path / ro.PROMOTION_EXECUTION_FILE if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"--execution {path}: no promotion execution record there")
    data = read_capped(file, MAX_FILE_BYTES, source=str(file))
    _, execution = ro.parse_document(data, ro.PromotionExecution, source=file.name)
    return file, data, execution


def _check_execution(store: Store, file: Path, data: bytes, execution: Any) -> None:
    from ringward.core.promotion import rollout as ro
    from ringward.operations.promotion.rollout_base import ledger

    rows = ledger(store).by_ref(execution.execution_id, step="execution")
    if not rows:
        raise StateError(f"{file}: promotion execution {execution.execution_id} is not recorded in this store")
    if rows[0].document_sha256 != _sha256(data):
        raise BindingMismatchError(f"{file}: sha256 {_sha256(data)}, but execution {execution.execution_id} was "
                                   f"recorded with {rows[0].document_sha256} (the record was altered)")
    if execution.execution_status != ro.EXECUTED:
        raise StateError(f"{file}: execution_status is {execution.execution_status!r}, expected {ro.EXECUTED!r}")


def _execution_link(store: Store, path: Path, packages: dict[str, AdvisoryRelease]) -> ExecutionLink:
    file, data, execution = _load_execution(path)
    _check_execution(store, file, data, execution)
    if execution.release.version not in packages:
        raise BindingMismatchError(f"--execution {path}: promotes release {execution.release.version}, which no "
                                   "--package links")
    return ExecutionLink(path=str(file.absolute()), execution_id=execution.execution_id,
                         rollout_id=execution.rollout_id, release_version=execution.release.version,
                         sha256=_sha256(data))


def _evidence_link(store: Store, evidence_id: int, kinds: frozenset[str] | None, *, option: str,
                   versions: set[str]) -> EvidenceLink:
    try:
        record = store.get_evidence(evidence_id)
    except EvidenceNotFoundError as exc:
        raise InputError(f"{option}: evidence record {evidence_id} does not exist") from exc
    problem = _record_problem(record, kinds, versions)
    if problem:
        raise InputError(f"{option}: evidence record {evidence_id}: {problem}")
    return EvidenceLink(evidence_id=record.id, kind=record.kind, record_hash=record.record_hash)


def _record_problem(record: Any, kinds: frozenset[str] | None, versions: set[str]) -> str | None:
    if kinds is not None and record.kind not in kinds:
        return f"kind {record.kind!r}, expected {' or '.join(sorted(kinds))}"
    if record.subject.success is False or record.payload.get("refused"):
        return "records a refusal or failure, not the step itself"
    version = record.subject.release_version
    if version is not None and versions and version not in versions:
        return f"is about release {version}, not a linked release ({', '.join(sorted(versions))})"
    if record.kind == DELIVERY_EVIDENCE_KIND and record.payload.get("delivery_success") is not True:
        return "the delivery did not succeed"
    return None


def _parse_evidence_options(values: Sequence[str]) -> list[tuple[EvidenceItem, int]]:
    out = []
    for value in values:
        item, sep, ident = value.partition("=")
        if not sep:
            raise InputError(f"--evidence {value!r}: expected ITEM=EVIDENCE_ID (items: "
                             f"{', '.join(i.value for i in EvidenceItem)})")
        try:
            parsed_item = EvidenceItem(item.strip())
        except ValueError as exc:
            raise InputError(f"--evidence {value!r}: unknown item {item!r}; expected one of "
                             f"{', '.join(i.value for i in EvidenceItem)}") from exc
        if not ident.strip().isdigit() or int(ident) < 1:
            raise InputError(f"--evidence {value!r}: evidence id must be a positive integer")
        out.append((parsed_item, int(ident)))
    return out


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{option}: expected YYYY-MM-DD, found {value!r}") from exc


# --- create ----------------------------------------------------------------------------------------------


def create_advisory(
    store: Store,
    *,
    advisory_id: str,
    severity: Severity,
    summary: str,
    affected: str,
    fixed: Sequence[str],
    cwe: Sequence[str],
    cvss: str,
    packages: Sequence[Path],
    trust_root: Path,
    output: Path,
    actor: str,
    now: datetime,
    purl: str | None = None,
    cve: str | None = None,
    aliases: Sequence[str] = (),
    reporter: str | None = None,
    user_safety: Sequence[UserSafetyClass] = (),
    user_safety_impact: str | None = None,
    components: Sequence[str] = (),
    details: str | None = None,
    customer_impact: str | None = None,
    exploitation_prerequisites: str | None = None,
    mitigation: str | None = None,
    fix_commit: str | None = None,
    pull_request: str | None = None,
    release_assets: Sequence[str] = (),
    release_tag: str | None = None,
    rollouts: Sequence[Path] = (),
    executions: Sequence[Path] = (),
    deliveries: Sequence[int] = (),
    evidence: Sequence[str] = (),
    timeline: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Build, check and write the advisory record (see the module docstring)."""
    if output.exists():
        raise OutputExistsError(f"--output {output}: exists; refusing to overwrite")
    check_output_parent(output, option="--output")
    assessment = assess_severity(severity, cvss, tuple(user_safety))
    evidence_items = _parse_evidence_options(evidence)
    dates = {name: _parse_date(value, f"--{name}") for name, value in (timeline or {}).items()}
    if not packages:
        raise InputError("--package: at least one release package is required (the fixed release)")
    if len(set(fixed)) != len(fixed) or not fixed:
        raise InputError("--fixed: at least one fixed version, each once")
    root = _root(trust_root)
    subject = EvidenceSubject(status="drafted")
    context: dict[str, Any] = {"advisory_id": advisory_id, "packages": [str(p) for p in packages]}
    try:
        releases = {}
        for package in packages:
            release = load_release(package, root, now=now)
            releases[release.version] = release
        first = next(iter(releases.values()))
        subject = EvidenceSubject(release_version=first.version, runtime=first.runtime, status="drafted")
        product = product_purl(purl or _default_purl(first))
        affected_range = parse_range(affected, product)
        osv_events(affected_range)  # a range OSV cannot express is refused now, not at publish
        for release in releases.values():
            if in_range(parse_version(release.version, affected_range, option="--package version"), affected_range):
                raise InputError(f"--package {release.package_dir}: release {release.version} is inside the affected "
                                 f"range {affected_range}; link the fixed release")
        for version in fixed:
            if in_range(parse_version(version, affected_range, option="--fixed"), affected_range):
                raise InputError(f"--fixed {version}: inside the affected range {affected_range}")
        versions = set(releases)
        links = AdvisoryLinks(
            packages=tuple(r.link(now) for r in releases.values()),
            rollouts=tuple(_rollout_link(p, root, now, releases) for p in rollouts),
            promotion_executions=tuple(_execution_link(store, p, releases) for p in executions),
            deliveries=tuple(_evidence_link(store, i, frozenset({DELIVERY_EVIDENCE_KIND}), option="--delivery",
                                            versions=set()) for i in deliveries),
            evidence=_group(store, evidence_items, versions),
        )
        record = AdvisoryRecord(
            advisory_id=advisory_id, release_tag=release_tag, created_at=now, created_by=actor, summary=summary,
            details=details, severity=assessment, cve=cve, aliases=tuple(aliases), cwe=tuple(cwe), reporter=reporter,
            user_safety_impact=user_safety_impact,
            affected=AffectedProduct(purl=product.to_string(), ecosystem=ecosystem_of(product).osv,
                                     name=osv_package_name(product),
                                     components=tuple(components) or tuple(sorted({r.runtime for r in
                                                                                  releases.values()})),
                                     range=str(affected_range), fixed=tuple(fixed)),
            customer_impact=customer_impact, exploitation_prerequisites=exploitation_prerequisites,
            mitigation_before_upgrade=mitigation,
            fix=FixReferences(commit=fix_commit, pull_request=pull_request, release_assets=tuple(release_assets)),
            verification_steps=tuple(step for r in releases.values() for step in
                                     verify_commands(r.runtime, r.version, str(r.package_dir))),
            audit_paths=_audit_paths(links),
            timeline=DisclosureTimeline(**{k: v for k, v in dates.items() if v is not None}),
            links=links,
        )
    except RingwardError as exc:
        if isinstance(exc, VerificationError | StateError):
            _record_refusal(store, KIND_ADVISORY, exc, actor=actor, now=now, subject=subject, payload=context)
        raise
    except ValueError as exc:  # a pydantic field (id, CVE, CWE pattern) the caller supplied
        raise InputError(_first_line(exc)) from exc
    data = dumps_document(record.document())
    atomic_write(output, data, overwrite=False)
    evidence_record = store.append(EvidenceDraft(
        kind=KIND_ADVISORY, actor=actor, subject=subject,
        payload={"schema_version": "ringward.security-advisory-record.v1", "advisory_id": advisory_id,
                 "advisory_sha256": _sha256(data), "output": str(output), "severity": assessment.model_dump(
                     mode="json"), "links": links.model_dump(mode="json")},
    ), now=now)
    return {"advisory_id": advisory_id, "output": str(output), "advisory_sha256": _sha256(data),
            "severity": assessment.effective.value, "severity_rule": assessment.rule,
            "cvss": assessment.cvss.model_dump(mode="json"), "notes": list(assessment.notes),
            "evidence_id": evidence_record.id}


def _first_line(exc: ValueError) -> str:
    from pydantic import ValidationError

    from ringward.core.errors import validation_problem

    if isinstance(exc, ValidationError):
        return f"advisory: {validation_problem(exc)}"
    return str(exc).splitlines()[0]


def _default_purl(release: AdvisoryRelease) -> str:
    """Without --purl: the Go module named by the release's repository (``pkg:golang/github.com/<repo>``)."""
    if not release.repository:
        raise InputError("--purl: required (the release names no repository to derive it from)")
    return f"pkg:golang/github.com/{release.repository}"


def _group(store: Store, items: Sequence[tuple[EvidenceItem, int]], versions: set[str]
           ) -> dict[EvidenceItem, tuple[EvidenceLink, ...]]:
    grouped: dict[EvidenceItem, list[EvidenceLink]] = {}
    for item, evidence_id in items:
        grouped.setdefault(item, []).append(
            _evidence_link(store, evidence_id, EVIDENCE_KINDS[item], option=f"--evidence {item.value}",
                           versions=versions))
    return {item: tuple(links) for item, links in grouped.items()}


def _audit_paths(links: AdvisoryLinks) -> tuple[str, ...]:
    out = [f"ringward rollout show {e.execution_id}" for e in links.promotion_executions]
    out += [f"ringward evidence search --kind managed-endpoint-rollout --release-version {p.version}"
            for p in links.packages]
    if links.deliveries:
        out += ["ringward connectors history", "ringward connectors dashboard"]
    return tuple(dict.fromkeys(out))


def _record_refusal(store: Store, kind: str, error: RingwardError, *, actor: str, now: datetime,
                    subject: EvidenceSubject, payload: dict[str, Any]) -> int:
    from ringward.operations.promotion.channel_ops import record_refusal

    return record_refusal(store, kind, error, actor=actor, now=now, subject=subject, payload=payload)


# --- the completeness gate ------------------------------------------------------------------------------


_DOCUMENT_ITEMS: Final = {
    PackageDocument.PROVENANCE: "SLSA provenance",
    PackageDocument.SBOM: "SBOM",
    PackageDocument.INSTALLER_METADATA: "installer metadata",
    PackageDocument.ENDPOINT_DEPLOYMENT: "managed endpoint deployment manifest",
    PackageDocument.CHANNEL_MANIFEST: "release channel review (channel manifest)",
    PackageDocument.UPDATER_POLICY: "updater policy review",
    PackageDocument.CHECKSUMS: "checksums",
    PackageDocument.RELEASE_EVIDENCE: "release evidence",
    PackageDocument.OFFLINE_BOOTSTRAP: "offline trust bootstrap",
}


def _package_items(record: AdvisoryRecord, root: TrustRoot, now: datetime
                   ) -> tuple[list[GateItem], dict[str, AdvisoryRelease]]:
    if not record.links.packages:
        missing = [GateItem(name="release package", status=ItemStatus.MISSING, required=True,
                            detail="no release package linked")]
        missing += [GateItem(name=name, status=ItemStatus.MISSING, required=True, detail="no release package linked")
                    for doc, name in _DOCUMENT_ITEMS.items() if doc in (PackageDocument.PROVENANCE,
                                                                        PackageDocument.SBOM)]
        return missing, {}
    items: list[GateItem] = []
    releases: dict[str, AdvisoryRelease] = {}
    for link in record.links.packages:
        label = f"release package {link.runtime} {link.version}"
        try:
            release = load_release(Path(link.path), root, now=now)
        except RingwardError as exc:
            items.append(GateItem(name=label, status=ItemStatus.FAILING, required=True,
                                  detail=f"does not re-verify against the trust root: {exc.message}"))
            continue
        if release.checksums_digest != link.checksums_digest or release.version != link.version:
            items.append(GateItem(name=label, status=ItemStatus.FAILING, required=True,
                                  detail=f"checksums digest {release.checksums_digest} (version {release.version}), "
                                         f"advisory links {link.checksums_digest} ({link.version})"))
            continue
        releases[release.version] = release
        items.append(GateItem(name=label, status=ItemStatus.OK, required=True,
                              detail=f"re-verified; {len(release.verification.verified_files)} files, signed by "
                                     f"{', '.join(release.verification.signers) or 'n/a'}"))
        current = release.document_links()
        for doc, name in _DOCUMENT_ITEMS.items():
            required = doc in (PackageDocument.PROVENANCE, PackageDocument.SBOM, PackageDocument.CHECKSUMS)
            linked, now_doc = link.documents.get(doc), current.get(doc)
            if linked is None:
                items.append(GateItem(name=f"{name} ({link.version})", status=ItemStatus.MISSING, required=required,
                                      detail="not linked by the advisory"))
            elif now_doc is None or now_doc.sha256 != linked.sha256:
                items.append(GateItem(name=f"{name} ({link.version})", status=ItemStatus.FAILING, required=required,
                                      detail=f"{linked.name}: advisory links sha256 {linked.sha256}, package has "
                                             f"{now_doc.sha256 if now_doc else 'no such document'}"))
            else:
                items.append(GateItem(name=f"{name} ({link.version})", status=ItemStatus.OK, required=required,
                                      detail=f"{linked.name} sha256:{linked.sha256}"))
        items.append(_signatures_item(link.signature_files, release, link.version))
        items.append(_fix_commit_item(record, release))
        items.append(_fixed_release_item(record, release))
    return items, releases


def _signatures_item(linked: tuple[str, ...], release: AdvisoryRelease, version: str) -> GateItem:
    name = f"detached signatures ({version})"
    if not linked:
        return GateItem(name=name, status=ItemStatus.MISSING, required=True, detail="no signature file linked")
    missing = sorted(set(linked) - set(release.signature_files))
    if missing:
        return GateItem(name=name, status=ItemStatus.FAILING, required=True,
                        detail=f"linked signature files absent now: {', '.join(missing)}")
    return GateItem(name=name, status=ItemStatus.OK, required=True, detail=f"{len(linked)} signature file(s) verified")


def _fix_commit_item(record: AdvisoryRecord, release: AdvisoryRelease) -> GateItem:
    name = f"fixed commit is the release's commit ({release.version})"
    if record.fix.commit is None:
        return GateItem(name=name, status=ItemStatus.MISSING, required=True, detail="no fixed commit")
    if not release.commit.startswith(record.fix.commit):
        return GateItem(name=name, status=ItemStatus.FAILING, required=True,
                        detail=f"advisory says {record.fix.commit}, the signed release was built from {release.commit}")
    return GateItem(name=name, status=ItemStatus.OK, required=True, detail=release.commit)


def _fixed_release_item(record: AdvisoryRecord, release: AdvisoryRelease) -> GateItem:
    name = f"linked release is outside the affected range ({release.version})"
    try:
        purl = product_purl(record.affected.purl, option="affected.purl")
        affected = parse_range(record.affected.range, purl, option="affected.range")
        inside = in_range(parse_version(release.version, affected, option="release version"), affected)
    except InputError as exc:
        return GateItem(name=name, status=ItemStatus.FAILING, required=True, detail=exc.message)
    if inside:
        return GateItem(name=name, status=ItemStatus.FAILING, required=True,
                        detail=f"release {release.version} is inside {affected}")
    return GateItem(name=name, status=ItemStatus.OK, required=True, detail=f"{release.version} not in {affected}")


def _rollout_items(record: AdvisoryRecord, root: TrustRoot, now: datetime,
                   releases: dict[str, AdvisoryRelease]) -> list[GateItem]:
    from ringward.operations.promotion.rollout_capture import check_rollout

    if not record.links.rollouts:
        return [GateItem(name="rollout evidence", status=ItemStatus.MISSING, required=True,
                         detail="no rollout evidence linked")]
    items = []
    for link in record.links.rollouts:
        name = f"rollout evidence {link.rollout_id}"
        release = releases.get(link.release_version)
        try:
            checked = check_rollout(Path(link.path), root, now=now,
                                    package_dir=release.package_dir if release else None)
        except RingwardError as exc:
            items.append(GateItem(name=name, status=ItemStatus.FAILING, required=True,
                                  detail=f"does not re-verify: {exc.message}"))
            continue
        if checked.evidence_sha256 != link.evidence_sha256:
            items.append(GateItem(name=name, status=ItemStatus.FAILING, required=True,
                                  detail=f"rollout evidence sha256 {checked.evidence_sha256}, advisory links "
                                         f"{link.evidence_sha256}"))
        elif release is None:
            items.append(GateItem(name=name, status=ItemStatus.FAILING, required=True,
                                  detail=f"rolls out {link.release_version}, which is not a verified linked package"))
        else:
            items.append(GateItem(name=name, status=ItemStatus.OK, required=True,
                                  detail=f"re-verified against the package ({link.release_version})"))
    return items


def _execution_items(store: Store, record: AdvisoryRecord, releases: dict[str, AdvisoryRelease]) -> list[GateItem]:
    if not record.links.promotion_executions:
        return [GateItem(name="promotion execution", status=ItemStatus.MISSING, required=True,
                         detail="no approved promotion execution linked")]
    items = []
    for link in record.links.promotion_executions:
        name = f"promotion execution {link.execution_id}"
        try:
            file, data, execution = _load_execution(Path(link.path))
            _check_execution(store, file, data, execution)
        except RingwardError as exc:
            items.append(GateItem(name=name, status=ItemStatus.FAILING, required=True, detail=exc.message))
            continue
        if _sha256(data) != link.sha256:
            items.append(GateItem(name=name, status=ItemStatus.FAILING, required=True,
                                  detail=f"sha256 {_sha256(data)}, advisory links {link.sha256}"))
        elif execution.release.version not in releases:
            items.append(GateItem(name=name, status=ItemStatus.FAILING, required=True,
                                  detail=f"promotes {execution.release.version}, not a verified linked package"))
        else:
            items.append(GateItem(name=name, status=ItemStatus.OK, required=True,
                                  detail=f"recorded in the rollout ledger; status {execution.execution_status}"))
    return items


def _record_item(store: Store, name: str, link: EvidenceLink, kinds: frozenset[str] | None, required: bool,
                 versions: set[str]) -> GateItem:
    try:
        record = store.get_evidence(link.evidence_id)
    except EvidenceNotFoundError:
        return GateItem(name=name, status=ItemStatus.FAILING, required=required,
                        detail=f"evidence record {link.evidence_id} does not exist in this store")
    if record.record_hash != link.record_hash:
        return GateItem(name=name, status=ItemStatus.FAILING, required=required,
                        detail=f"evidence record {link.evidence_id} hash {record.record_hash}, advisory links "
                               f"{link.record_hash}")
    problem = _record_problem(record, kinds, versions)
    if problem:
        return GateItem(name=name, status=ItemStatus.FAILING, required=required,
                        detail=f"evidence record {link.evidence_id} {problem}")
    return GateItem(name=name, status=ItemStatus.OK, required=required,
                    detail=f"evidence {link.evidence_id} ({record.kind})")


def _evidence_items(store: Store, record: AdvisoryRecord, versions: set[str]) -> list[GateItem]:
    items: list[GateItem] = []
    if not record.links.deliveries:
        items.append(GateItem(name="connector delivery", status=ItemStatus.MISSING, required=True,
                              detail="no connector delivery record linked"))
    for link in record.links.deliveries:
        items.append(_record_item(store, f"connector delivery {link.evidence_id}", link,
                                  frozenset({DELIVERY_EVIDENCE_KIND}), True, set()))
    for item in EvidenceItem:
        links = record.links.evidence.get(item, ())
        if not links:
            items.append(GateItem(name=item.value, status=ItemStatus.NOT_LINKED, required=False,
                                  detail="recommended by the advisory checklist; not linked"))
        for link in links:
            items.append(_record_item(store, f"{item.value} {link.evidence_id}", link, EVIDENCE_KINDS[item], False,
                                      versions))
    return items


def _signature_item(raw: dict[str, Any], root: TrustRoot, now: datetime) -> GateItem:
    """A published (signed) advisory: the signature must verify under a pinned advisory-role key."""
    name = "advisory signature"
    try:
        check = verify_signed_payload(raw, trust_root=root, role=Role.ADVISORY, now=now, label="advisory",
                                      schema_version=ADVISORY_SIGNATURE_SCHEMA)
    except RingwardError as exc:
        return GateItem(name=name, status=ItemStatus.FAILING, required=True, detail=exc.message)
    return GateItem(name=name, status=ItemStatus.OK, required=True,
                    detail=f"signed by advisory-role key {check.key_id[:16]} ({check.signer})")


def run_gate(store: Store, record: AdvisoryRecord, root: TrustRoot, *, now: datetime,
             raw: dict[str, Any] | None = None) -> GateReport:
    """Every item of the gate, in the seed's order (content, package, rollout, execution, records);
    with ``raw`` carrying a ``signature``, its advisory-role signature too."""
    items = content_items(record)
    if raw is not None and "signature" in raw:
        items.append(_signature_item(raw, root, now))
    package_items, releases = _package_items(record, root, now)
    items += package_items
    items += _rollout_items(record, root, now, releases)
    items += _execution_items(store, record, releases)
    items += _evidence_items(store, record, set(releases))
    return report(record, items)


def _load_advisory(path: Path) -> tuple[bytes, dict[str, Any], AdvisoryRecord]:
    if path.is_dir():
        path = path / ADVISORY_FILE
    if not path.is_file():
        raise InputError(f"{path}: advisory file does not exist")
    data = read_capped(path, MAX_FILE_BYTES, source=str(path))
    raw, record = parse_advisory(data, source=str(path))
    return data, raw, record


def _subject(record: AdvisoryRecord, status: str, success: bool) -> EvidenceSubject:
    version = record.links.packages[0].version if record.links.packages else None
    runtime = record.links.packages[0].runtime if record.links.packages else None
    return EvidenceSubject(release_version=version, runtime=runtime, status=status, success=success)


def check_advisory(store: Store, *, advisory: Path, trust_root: Path, actor: str, now: datetime) -> dict[str, Any]:
    """Run the gate; record it (``security-advisory-gate``); return its report (``passed`` false = exit 1)."""
    data, raw, record = _load_advisory(advisory)
    root = _root(trust_root)
    gate = run_gate(store, record, root, now=now, raw=raw)
    document = gate.document()
    evidence = store.append(EvidenceDraft(
        kind=KIND_GATE, actor=actor, subject=_subject(record, "passed" if gate.passed else "failed", gate.passed),
        payload={**document, "advisory_sha256": _sha256(data), "advisory": str(advisory)},
    ), now=now)
    return {**document, "advisory_sha256": _sha256(data), "evidence_id": evidence.id}


# --- publish ---------------------------------------------------------------------------------------------


def _advisory_key(signing_key: Path, root: TrustRoot, now: datetime, actor: str) -> Any:
    from ringward.operations.trust.keys import load_signing_key

    if signing_key.is_dir():
        raise InputError(f"--signing-key {signing_key}: is a directory, expected a PEM file")
    key = load_signing_key(signing_key)
    if key is None:  # pragma: no cover - a path is always given
        raise InputError("--signing-key: required")
    probe = sign_payload({"probe": "advisory"}, private_key=key, signer=actor, schema_version=ADVISORY_SIGNATURE_SCHEMA)
    verify_signed_payload(probe, trust_root=root, role=Role.ADVISORY, now=now, label="--signing-key",
                          schema_version=ADVISORY_SIGNATURE_SCHEMA)
    return key


def publish_advisory(
    store: Store,
    *,
    advisory: Path,
    signing_key: Path,
    trust_root: Path,
    output_dir: Path,
    actor: str,
    now: datetime,
    deliver: Path | None = None,
    provider: str = "all",
    delivery_hooks: Any = None,
) -> dict[str, Any]:
    """Gate, sign, export, index and (optionally) deliver (see the module docstring)."""
    from ringward.operations.advisories.state_ops import index_published
    from ringward.operations.promotion.channel_ops import (
        bundle_draft,
        check_output_free,
        commit_directory,
        staged_output,
        write_files,
    )

    data, raw, record = _load_advisory(advisory)
    root = _root(trust_root)
    check_output_free(output_dir, option="--output-dir")
    config = None
    if deliver is not None:
        from ringward.operations.delivery.delivery_ops import load_connector_config

        config = load_connector_config(deliver)
    context: dict[str, Any] = {"advisory_id": record.advisory_id, "advisory": str(advisory),
                               "advisory_sha256": _sha256(data)}
    try:
        key = _advisory_key(signing_key, root, now, actor)
        gate = run_gate(store, record, root, now=now)
        # gate on the severity the vector and classes give, never on the one written in the file
        severity = recomputed_severity(record).effective
        if not gate.passed and (severity in GATED or record.severity.effective in GATED):
            problems = tuple(f"{i.name}: {i.status.value} - {i.detail}" for i in gate.problems)
            shown = max(severity, record.severity.effective, key=lambda s: s.rank)
            raise AdvisoryGateError(
                f"{record.advisory_id}: a {shown.value} advisory cannot be published while the "
                f"completeness gate fails ({len(problems)} problem(s)); first: {problems[0]}", problems)
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            refused = dict(context)
            if isinstance(exc, AdvisoryGateError):
                refused["gate_problems"] = list(exc.problems)
            _record_refusal(store, KIND_PUBLICATION, exc, actor=actor, now=now,
                            subject=_subject(record, "refused", False), payload=refused)
        raise
    body = {k: v for k, v in raw.items() if k != "signature"}
    signed = sign_payload(body, private_key=key, signer=actor, schema_version=ADVISORY_SIGNATURE_SCHEMA)
    check = verify_signed_payload(signed, trust_root=root, role=Role.ADVISORY, now=now, label="advisory",
                                  schema_version=ADVISORY_SIGNATURE_SCHEMA)
    osv = exports.osv_document(record, published=now, advisory_sha256=check.payload_sha256)
    files = {
        ADVISORY_FILE: dumps_document(signed),
        OSV_FILE: dumps_document(osv),
        GHSA_FILE: dumps_document(exports.ghsa_document(record)),
        TEXT_FILE: exports.advisory_text(record).encode("utf-8"),
        GATE_FILE: dumps_document(gate.document()),
    }
    with staged_output(output_dir) as staging:
        write_files(staging, files)
        commit_directory(staging, output_dir, option="--output-dir")
    payload: dict[str, Any] = {
        "schema_version": "ringward.security-advisory-publication.v1",
        **context,
        "signed_sha256": check.payload_sha256,
        "signer_key_id": check.key_id,
        "severity": record.severity.model_dump(mode="json"),
        "gate_passed": gate.passed,
        "gate_problems": [f"{i.name}: {i.status.value}" for i in gate.problems],
        "output_dir": str(output_dir),
        "files": {name: _sha256(body_bytes) for name, body_bytes in files.items()},
        "osv_id": osv["id"],
    }
    draft, _ = bundle_draft(KIND_PUBLICATION, actor=actor, payload=payload, files=files,
                            subject=_subject(record, "published", True), flow_run_id=None, now=now)
    evidence = index_published(store, record, signed_sha256=check.payload_sha256, draft=draft, actor=actor, now=now)
    result: dict[str, Any] = {
        "advisory_id": record.advisory_id, "severity": record.severity.effective.value, "gate_passed": gate.passed,
        "gate_problems": payload["gate_problems"], "output_dir": str(output_dir),
        "files": sorted(str(output_dir / n) for n in files), "signer_key_id": check.key_id,
        "signed_sha256": check.payload_sha256, "osv_id": osv["id"], "evidence_id": evidence.id,
    }
    if config is not None:
        from ringward.operations.delivery import delivery_ops

        kwargs: dict[str, Any] = {"hooks": delivery_hooks} if delivery_hooks is not None else {}
        run = delivery_ops.deliver_event(_advisory_event(record, check.payload_sha256, now), config, store=store,
                                         providers=provider, actor=actor, source="ringward_advisory_publication",
                                         **kwargs)
        result["delivery"] = {"event_id": run.event.event_id, "success": run.success,
                              "evidence_id": run.evidence_id, "deliveries": run.summary_rows()}
    return result


def _advisory_event(record: AdvisoryRecord, signed_sha256: str, now: datetime) -> Any:
    from ringward.core.delivery.event import ConnectorEvent
    from ringward.core.delivery.event import Severity as EventSeverity

    level = {Severity.CRITICAL: EventSeverity.CRITICAL, Severity.HIGH: EventSeverity.ERROR,
             Severity.MEDIUM: EventSeverity.WARNING, Severity.LOW: EventSeverity.INFO}[record.severity.effective]
    version = record.links.packages[0].version if record.links.packages else None
    return ConnectorEvent(
        event_id=f"advisory-{record.advisory_id}-{signed_sha256[:12]}".replace(" ", "-"),
        event_type="ringward.advisory.published", created_at=now, severity=level,
        title=f"Security advisory {record.advisory_id} ({record.severity.effective.value}): {record.summary}"[:250],
        summary=(f"{record.affected.purl} {record.affected.range} fixed in {', '.join(record.affected.fixed)}; "
                 f"CVSS {record.severity.cvss.base_score} ({record.severity.cvss.vector})")[:8000],
        source="ringward", release_version=version,
        attributes={"advisory_id": record.advisory_id, "cve": record.cve, "cwe": list(record.cwe),
                    "severity": record.severity.effective.value, "advisory_sha256": signed_sha256},
    )


def known_advisory_facts(record: AdvisoryRecord) -> dict[str, Any]:
    """What ``kev check`` reads of a published advisory."""
    purl = product_purl(record.affected.purl, option="affected.purl")
    return {"advisory_id": record.advisory_id, "purl": versionless(purl), "range": record.affected.range,
            "cves": [c for c in (record.cve, *record.aliases) if c],
            "severity": record.severity.effective.value}
