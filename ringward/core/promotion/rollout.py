"""Rollouts across rings: the documents, ids, bindings and checks of capture -> verify -> promotion
request -> execution -> rollback request -> rollback -> audit (reference §4.9-§4.15).

File names, fields, ``schema_version`` strings and id formulas are the reference's, so its
rollout directories and execution records interoperate. What Ringward adds (fields are added,
never removed) and checks that the reference does not (§11 items 1, 5, 6, 7):

- RO1 a change record is required and is never the reference's silent default ``unassigned``.
- RO2 a promotion request is signed by a pinned **promotion**-role key; the approval it opens binds
  the digest of everything the request says except its approval block, signature and time
  (:func:`promotion_subject_digest`), so a request altered after approval fails both the signature
  and the binding, even when re-signed by an insider.
- RO3 an execution re-verifies the rollout evidence (checksums, source artifacts) and the release
  package at execution time, and the evidence must be the very bytes the request named.
- RO4 a rollback is bound to the exact bytes of one recorded promotion execution, is requested in a
  signed document, and happens at most once per execution.

Pure: no I/O, time is a parameter.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import InputError, MalformedDocumentError, validation_problem
from ringward.core.promotion.signed_payload import payload_digest

# --- file names and schema strings (reference) -------------------------------------------------

ROLLOUT_EVIDENCE_FILE = "managed-endpoint-rollout-evidence.json"
ROLLOUT_EVIDENCE_MD = "managed-endpoint-rollout-evidence.md"
CHECKSUMS_FILE = "checksums.txt"
ROLLOUT_EVIDENCE_SCHEMA = "cavra.go-runtime.endpoint-rollout-evidence.v1"

PROMOTION_REQUEST_FILE = "rollout-promotion-approval-request.json"
PROMOTION_REQUEST_MD = "rollout-promotion-approval-request.md"
PROMOTION_REQUEST_SCHEMA = "cavra.go-runtime.endpoint-rollout-promotion-request.v1"

PROMOTION_EXECUTION_FILE = "rollout-promotion-execution.json"
PROMOTION_EXECUTION_MD = "rollout-promotion-execution.md"
PROMOTION_EXECUTION_SCHEMA = "cavra.go-runtime.endpoint-rollout-promotion-execution.v1"

ROLLBACK_REQUEST_FILE = "rollout-rollback-request.json"
ROLLBACK_REQUEST_MD = "rollout-rollback-request.md"
#: Ringward's own document: the reference has no way to ask for a rollback
ROLLBACK_REQUEST_SCHEMA = "ringward.rollout-rollback-request.v1"

ROLLBACK_EXECUTION_FILE = "rollout-rollback-execution.json"
ROLLBACK_EXECUTION_MD = "rollout-rollback-execution.md"
ROLLBACK_EXECUTION_SCHEMA = "cavra.go-runtime.endpoint-rollout-rollback-execution.v1"

PROMOTION_AUDIT_SCHEMA = "cavra.rollout-promotion.audit-event.v1"
ROLLBACK_AUDIT_SCHEMA = "cavra.rollout-rollback.audit-event.v1"
PROMOTION_AUDIT_EVENT_TYPE = "cavra.rollout_promotion_execution"
ROLLBACK_AUDIT_EVENT_TYPE = "cavra.rollout_rollback_execution"
PROMOTION_AUDIT_FILE = "promotion-execution-audit-event.json"
ROLLBACK_AUDIT_FILE = "rollback-execution-audit-event.json"
WEBHOOK_PROMOTION_SCHEMA = "cavra.webhook.rollout-promotion.v1"
WEBHOOK_ROLLBACK_SCHEMA = "cavra.webhook.rollout-rollback.v1"
AUDIT_PROVIDERS = ("splunk", "sentinel", "datadog", "webhook", "jira", "servicenow")

# --- approvals -----------------------------------------------------------------------------------

ACTION_PROMOTE = "release_promote_endpoint_rollout"
ACTION_ROLLBACK = "release_rollback_endpoint_rollout"
PROMOTION_RULE_ID = "release.rollout.promotion.require_approval"
ROLLBACK_RULE_ID = "release.rollout.rollback.require_approval"
DEFAULT_APPROVER_GROUP = "Change Advisory Board"

# --- statuses and controls -------------------------------------------------------------------------

RolloutStatus = Literal["planned", "staged", "succeeded", "failed", "rolled_back"]
ROLLOUT_STATUSES: tuple[str, ...] = ("planned", "staged", "succeeded", "failed", "rolled_back")
PROMOTABLE_STATUSES: tuple[str, ...] = ("staged", "succeeded")
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
EXECUTED = "executed"

ROLLOUT_CONTROLS = (
    "signed-package-verified-before-rollout",
    "endpoint-deployment-manifest-reviewed",
    "rollout-change-record-linked",
    "rollback-plan-captured",
    "rollout-evidence-checksummed",
)
EXECUTION_CONTROLS = (
    "promotion-request-signature-verified",
    "approval-state-approved",
    "approval-bound-to-rollout",
    "ring-advancement-recorded",
    # Ringward additions
    "promotion-request-signed-by-pinned-promotion-key",
    "approval-looked-up-in-store",
    "approval-unexpired-at-use",
    "approval-consumed-once",
    "rollout-evidence-reverified-at-execution",
    "release-package-reverified-at-execution",
    "promotion-window-checked",
)
ROLLBACK_CONTROLS = (
    "rollback-approval-state-approved",
    "rollback-bound-to-promotion-execution",
    "rollback-evidence-references-present",
    "ring-rollback-recorded",
    # Ringward additions
    "rollback-request-signed-by-pinned-promotion-key",
    "rollback-approval-consumed-once",
    "rollback-once-per-execution",
)

# --- evidence kinds --------------------------------------------------------------------------------

KIND_CAPTURE = "managed-endpoint-rollout-capture"
#: the reference's kind, written when a rollout verifies
KIND_ROLLOUT = "managed-endpoint-rollout"
KIND_REQUEST = "rollout-promotion-request"
KIND_EXECUTION = "rollout-promotion-execution"
KIND_ROLLBACK_REQUEST = "rollout-rollback-request"
KIND_ROLLBACK = "rollout-rollback-execution"
KIND_AUDIT = "rollout-audit-export"
KIND_REFUSAL = "rollout-refusal"

#: ids, rings and environments: they appear in approval targets (``<rollout>-><ring>``) and paths
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)
#: change records and actors: one visible line
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_LINE = re.compile(LINE_PATTERN)
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b-\x1f\x7f]*$"
_TEXT = re.compile(TEXT_PATTERN)
#: the reference's default change record, refused (RO1)
UNASSIGNED = "unassigned"
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


def check_id(value: str, *, option: str) -> str:
    """An id / ring / environment name: letters, digits and ``._-``, at most 128 characters."""
    if not _ID.match(value):
        raise InputError(f"{option}: expected letters, digits and ._- (starting alphanumeric, <= 128), "
                         f"found {value!r}")
    return value


def check_line(value: str, *, option: str, maximum: int = 256) -> str:
    if len(value) > maximum or not _LINE.match(value):
        raise InputError(f"{option}: expected one visible line of at most {maximum} characters, found {value[:80]!r}")
    return value


def check_text(value: str, *, option: str, maximum: int = 4096) -> str:
    if len(value) > maximum or not _TEXT.match(value):
        raise InputError(f"{option}: expected visible text of at most {maximum} characters, found {value[:80]!r}")
    return value


def change_record_problem(value: object) -> str | None:
    """Why ``value`` is not a usable change record (RO1), or None."""
    if not isinstance(value, str) or not value.strip():
        return "a change record is required (found none)"
    if value.strip().casefold() == UNASSIGNED:
        return f"a change record is required, found the placeholder {value!r}"
    if len(value) > 128 or not _LINE.match(value):
        return f"expected one visible line of at most 128 characters, found {value[:80]!r}"
    return None


def check_change_record(value: str | None, *, option: str = "--change-record") -> str:
    problem = change_record_problem(value)
    if problem is not None:
        raise InputError(f"{option}: {problem}")
    assert value is not None
    return value


def check_status(value: str, *, option: str = "--status") -> RolloutStatus:
    if value not in ROLLOUT_STATUSES:
        raise InputError(
            f"{option}: unsupported rollout status {value!r}, expected one of {', '.join(ROLLOUT_STATUSES)}"
        )
    return value  # type: ignore[return-value]


# --- time and ids ----------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str, *, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedDocumentError(f"{where}: expected an ISO 8601 time, found {value!r}") from exc
    if parsed.utcoffset() is None:
        raise MalformedDocumentError(f"{where}: expected a UTC offset in {value!r}")
    return parsed.astimezone(UTC)


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def default_rollout_id(environment: str, version: str, now: datetime) -> str:
    """Reference: ``<environment>-<version with / -> ->-<UTC %Y%m%d%H%M%S>`` (other unsafe characters,
    such as SemVer build ``+``, also become ``-`` so the id is usable in targets and paths)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", version.replace("/", "-"))
    return f"{environment}-{safe}-{now.astimezone(UTC):%Y%m%d%H%M%S}"[:128]


def promotion_request_id(rollout_id: str, target_ring: str) -> str:
    """``rpr_`` + sha256("<rollout_id>:<target_ring>")[:12] (reference; deterministic)."""
    return "rpr_" + _sha12(f"{rollout_id}:{target_ring}")


def promotion_execution_id(request_id: str, approval_id: str) -> str:
    """``rpe_`` + sha256("<request_id>:<approval_id>")[:12] (reference)."""
    return "rpe_" + _sha12(f"{request_id}:{approval_id}")


def rollback_request_id(execution_id: str) -> str:
    """``rrq_`` + sha256("<execution_id>:rollback")[:12] (Ringward; one rollback per execution)."""
    return "rrq_" + _sha12(f"{execution_id}:rollback")


def rollback_id(execution_id: str, approval_id: str) -> str:
    """``rre_`` + sha256("<execution_id>:<approval_id>")[:12] (reference)."""
    return "rre_" + _sha12(f"{execution_id}:{approval_id}")


def promotion_target(rollout_id: str, target_ring: str) -> str:
    """The approval target of a promotion: ``<rollout_id>-><ring>``."""
    return f"{rollout_id}->{target_ring}"


def rollback_target(execution_id: str, promoted_ring: str, previous_ring: str) -> str:
    """The approval target of a rollback: ``<execution_id>:<promoted ring>-><previous ring>``."""
    return f"{execution_id}:{promoted_ring}->{previous_ring}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bytes_digest(data: bytes) -> str:
    """``sha256:<hex>`` of exact bytes (what a rollback approval binds to)."""
    return "sha256:" + sha256_hex(data)


#: request fields the approval binding leaves out: the approval itself, the signature and the time
_UNBOUND_REQUEST_FIELDS = ("approval", "signature", "created_at")


def promotion_subject_digest(request: dict[str, Any]) -> str:
    """The subject digest a promotion approval binds (RO2): the canonical digest of the request
    without its approval block, signature and ``created_at``. It covers the rollout id, the rollout
    evidence digest, the rings, the release, the targets and the requester; re-requesting the same
    thing yields the same digest, so a live approval can be reused instead of opening another."""
    return payload_digest({k: v for k, v in request.items() if k not in _UNBOUND_REQUEST_FIELDS})


# --- document models -------------------------------------------------------------------------------


class _Doc(BaseModel):
    # reference documents may carry fields we do not model; checksums or signatures cover them
    model_config = ConfigDict(extra="allow", frozen=True)


class Release(_Doc):
    version: str = Field(min_length=1, max_length=256)
    commit: str = Field(min_length=1, max_length=256)
    ref: str | None = Field(default=None, max_length=512)
    repository: str | None = Field(default=None, max_length=512)


class SourceArtifact(_Doc):
    path: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SourceArtifacts(_Doc):
    endpoint_deployment: SourceArtifact
    release_evidence: SourceArtifact


class RolloutTarget(_Doc):
    id: str = Field(min_length=1, max_length=256)
    surface: str
    platform: str
    installer_target: str
    binary: str
    binary_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    deployment_channel: str
    management_tool: str
    install_path: str
    rollout_gate: str
    verification_commands: list[str]
    rollback_steps: list[str]
    evidence_required: list[str]


class RolloutEvidence(_Doc):
    """``managed-endpoint-rollout-evidence.json``."""

    schema_version: Literal["cavra.go-runtime.endpoint-rollout-evidence.v1"]
    rollout_id: str = Field(pattern=ID_PATTERN)
    environment: str = Field(pattern=ID_PATTERN)
    rollout_ring: str = Field(pattern=ID_PATTERN)
    status: RolloutStatus
    actor: str = Field(min_length=1, max_length=256)
    change_record: str = Field(max_length=256)
    created_at: str
    package_dir: str = Field(min_length=1, max_length=4096)
    release: Release
    source_artifacts: SourceArtifacts
    deployment_targets: list[RolloutTarget]
    controls: list[str]
    package_verification: dict[str, Any] = Field(default_factory=dict)


class RollbackRef(_Doc):
    target: str
    ref: str
    step: str


class ApprovalRef(_Doc):
    """The approval a request opened (a summary; the store holds the record)."""

    approval_id: str = Field(min_length=1, max_length=64)
    action: str
    subject_digest: str
    target: str
    requester: str
    approver_group: str | None = None
    quorum: int = 1
    state: str = "pending"
    requested_at: str
    expires_at: str
    rule_id: str | None = None
    reused: bool = False


class PromotionRequest(_Doc):
    """``rollout-promotion-approval-request.json``."""

    schema_version: Literal["cavra.go-runtime.endpoint-rollout-promotion-request.v1"]
    request_id: str = Field(pattern=r"^rpr_[0-9a-f]{12}$")
    created_at: str
    rollout_id: str = Field(pattern=ID_PATTERN)
    environment: str = Field(pattern=ID_PATTERN)
    current_ring: str = Field(pattern=ID_PATTERN)
    target_ring: str = Field(pattern=ID_PATTERN)
    rollout_status: RolloutStatus
    change_record: str
    release: Release
    deployment_targets: list[RolloutTarget]
    rollback_evidence_refs: list[RollbackRef]
    verified_artifacts: list[str]
    approval: ApprovalRef
    signature: dict[str, Any]
    # Ringward additions
    requested_by: str = Field(min_length=1, max_length=256)
    rollout_dir: str = Field(min_length=1, max_length=4096)
    rollout_evidence_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    package_dir: str = Field(min_length=1, max_length=4096)


class ApprovalSummary(_Doc):
    approval_id: str
    state: str
    approver_group: str | None = None
    requested_by: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None
    approvers: list[str] = Field(default_factory=list)
    quorum: int = 1
    consumed_at: str | None = None
    consumed_by: str | None = None


class RingMove(BaseModel):
    """A ring change (``ring_advancement`` of an execution, ``ring_rollback`` of a rollback)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    previous_rollout_status: str
    new_rollout_status: str


class PromotionExecution(_Doc):
    """``rollout-promotion-execution.json``."""

    schema_version: Literal["cavra.go-runtime.endpoint-rollout-promotion-execution.v1"]
    execution_id: str = Field(pattern=r"^rpe_[0-9a-f]{12}$")
    request_id: str
    approval_id: str
    rollout_id: str = Field(pattern=ID_PATTERN)
    created_at: str
    executed_by: str
    execution_environment: str
    execution_status: str
    change_record: str
    release: Release
    deployment_targets: list[RolloutTarget]
    ring_advancement: RingMove
    approval: ApprovalSummary
    controls: list[str]
    request_sha256: str
    evidence_refs: list[str]
    rollback_evidence_refs: list[RollbackRef]
    notes: str | None = None
    # Ringward additions
    environment: str | None = None
    break_glass: bool = False
    break_glass_approval_id: str | None = None
    window: dict[str, Any] = Field(default_factory=dict)
    rollout_evidence_sha256: str | None = None
    package_dir: str | None = None


class RollbackRequest(BaseModel):
    """``rollout-rollback-request.json`` (Ringward's own, strict)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.rollout-rollback-request.v1"]
    request_id: str = Field(pattern=r"^rrq_[0-9a-f]{12}$")
    created_at: str
    promotion_execution_id: str = Field(pattern=r"^rpe_[0-9a-f]{12}$")
    promotion_execution_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rollout_id: str = Field(pattern=ID_PATTERN)
    environment: str
    promoted_ring: str
    previous_ring: str
    change_record: str
    release: Release
    reason: str = Field(min_length=1, max_length=4096)
    requested_by: str = Field(min_length=1, max_length=256)
    rollback_evidence_refs: list[RollbackRef]
    approval: ApprovalRef
    signature: dict[str, Any]


class RollbackExecution(_Doc):
    """``rollout-rollback-execution.json``."""

    schema_version: Literal["cavra.go-runtime.endpoint-rollout-rollback-execution.v1"]
    rollback_id: str = Field(pattern=r"^rre_[0-9a-f]{12}$")
    promotion_execution_id: str
    approval_id: str
    rollout_id: str = Field(pattern=ID_PATTERN)
    created_at: str
    executed_by: str
    execution_environment: str
    rollback_status: str
    rollback_reason: str
    change_record: str
    release: Release
    deployment_targets: list[RolloutTarget]
    ring_rollback: RingMove
    approval: ApprovalSummary
    controls: list[str]
    promotion_execution_sha256: str
    evidence_refs: list[str]
    rollback_evidence_refs: list[RollbackRef]
    notes: str | None = None
    # Ringward additions
    environment: str | None = None
    rollback_request_id: str | None = None
    channels: list[dict[str, Any]] = Field(default_factory=list)


def parse_document(data: bytes, model: type[Any], *, source: str) -> tuple[dict[str, Any], Any]:
    """Strict JSON, then the model: (raw document, parsed). Raises MalformedDocumentError naming
    the file and the first field problem."""
    raw = loads_strict(data, source=source, max_bytes=MAX_DOCUMENT_BYTES)
    if not isinstance(raw, dict):
        raise MalformedDocumentError(f"{source}: expected a JSON object, found {type(raw).__name__}")
    expected = model.model_fields["schema_version"].annotation
    schema = raw.get("schema_version")
    allowed = getattr(expected, "__args__", ())
    if allowed and schema not in allowed:
        raise MalformedDocumentError(f"{source}: schema_version expected {allowed[0]!r}, found {schema!r}")
    try:
        return raw, model.model_validate(raw)
    except ValidationError as exc:
        raise MalformedDocumentError(f"{source}: {validation_problem(exc)}") from exc


# --- builders --------------------------------------------------------------------------------------

#: fields of an endpoint deployment target the rollout evidence keeps (reference list)
TARGET_FIELDS = (
    "id",
    "surface",
    "platform",
    "installer_target",
    "binary",
    "binary_sha256",
    "deployment_channel",
    "management_tool",
    "install_path",
    "rollout_gate",
    "verification_commands",
    "rollback_steps",
    "evidence_required",
)


def rollout_targets(deployment_targets: list[dict[str, Any]], wanted: list[str]) -> list[dict[str, Any]]:
    """Select deployment targets by id (none requested = all), keeping the reference fields.

    Raises:
        InputError: an unknown id, or nothing selected.
    """
    known = {t["id"]: t for t in deployment_targets}
    if not known:
        raise InputError("endpoint deployment metadata has no deployment_targets")
    for target_id in wanted:
        if target_id not in known:
            raise InputError(f"--deployment-id: unknown endpoint deployment target {target_id!r} "
                             f"(known: {', '.join(sorted(known))})")
    chosen = [t for t in deployment_targets if not wanted or t["id"] in wanted]
    if not chosen:
        raise InputError("no endpoint deployment targets selected")
    return [{name: target.get(name) for name in TARGET_FIELDS} for target in chosen]


def rollback_refs(rollout_id: str, targets: list[RolloutTarget]) -> list[dict[str, str]]:
    """``[{target, ref "rollback://<rollout>/<target>/<n>", step}]`` (reference), numbered from 1."""
    return [
        {"target": t.id, "ref": f"rollback://{rollout_id}/{t.id}/{n}", "step": step}
        for t in targets
        for n, step in enumerate(t.rollback_steps, start=1)
    ]


def approval_summary(approval: Any) -> dict[str, Any]:
    """The approval block of an execution record, from a :class:`ringward.core.approvals.Approval`."""
    return {
        "approval_id": approval.approval_id,
        "state": approval.state.value,
        "approver_group": approval.approver_group,
        "requested_by": approval.requester,
        "decided_by": approval.decided_by,
        "decided_at": iso(approval.decided_at) if approval.decided_at else None,
        "decision_reason": approval.decision_reason,
        "approvers": approval.approvers(),
        "quorum": approval.quorum,
        "consumed_at": iso(approval.consumed_at) if approval.consumed_at else None,
        "consumed_by": approval.consumed_by,
    }


def metadata_item(kind: str, session_id: str, created_at: str, signer: str, **fields: Any) -> dict[str, Any]:
    """A reference-shaped evidence metadata item (``cavra.evidence.metadata.v1`` envelope), so
    ``ringward evidence export`` hands the reference system records it can read."""
    return {
        "schema_version": "cavra.evidence.metadata.v1",
        "product": "CAVRA",
        "session_id": session_id,
        "metadata_kind": kind,
        "created_at": created_at,
        "signer": signer,
        "decision_count": 0,
        "blocked_count": 0,
        "approval_required_count": 0,
        **fields,
    }


# --- markdown summaries ------------------------------------------------------------------------------


def _md(title: str, rows: list[tuple[str, Any]], sections: list[tuple[str, list[str]]] | None = None) -> bytes:
    lines = [f"# {title}", ""]
    for key, value in rows:
        lines.append(f"- **{key}**: {value if value not in (None, '') else '-'}")
    for heading, items in sections or []:
        lines += ["", f"## {heading}", ""]
        lines += [f"- {item}" for item in items] or ["- none"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def rollout_markdown(doc: dict[str, Any]) -> bytes:
    release = doc["release"]
    return _md(
        f"Managed endpoint rollout {doc['rollout_id']}",
        [
            ("Environment", doc["environment"]),
            ("Ring", doc["rollout_ring"]),
            ("Status", doc["status"]),
            ("Change record", doc["change_record"]),
            ("Actor", doc["actor"]),
            ("Created", doc["created_at"]),
            ("Release", f"{release['version']} ({release['commit']})"),
            ("Package", doc["package_dir"]),
        ],
        [
            ("Deployment targets", [f"`{t['id']}` {t['platform']} via {t['management_tool']}: "
                                    f"`{t['binary']}` sha256 {t['binary_sha256']}" for t in doc["deployment_targets"]]),
            ("Controls", list(doc["controls"])),
        ],
    )


def request_markdown(doc: dict[str, Any]) -> bytes:
    approval = doc["approval"]
    return _md(
        f"Rollout promotion request {doc['request_id']}",
        [
            ("Rollout", doc["rollout_id"]),
            ("Environment", doc["environment"]),
            ("Rings", f"{doc['current_ring']} -> {doc['target_ring']}"),
            ("Rollout status", doc["rollout_status"]),
            ("Change record", doc["change_record"]),
            ("Requested by", doc["requested_by"]),
            ("Release", doc["release"]["version"]),
            ("Approval", f"{approval['approval_id']} ({approval['state']}, expires {approval['expires_at']})"),
            ("Approval binding", approval["subject_digest"]),
        ],
        [("Rollback references", [f"{r['ref']}: {r['step']}" for r in doc["rollback_evidence_refs"]])],
    )


def execution_markdown(doc: dict[str, Any]) -> bytes:
    ring = doc["ring_advancement"]
    approval = doc["approval"]
    return _md(
        f"Rollout promotion execution {doc['execution_id']}",
        [
            ("Rollout", doc["rollout_id"]),
            ("Rings", f"{ring['from']} -> {ring['to']}"),
            ("Status", f"{ring['previous_rollout_status']} -> {ring['new_rollout_status']}"),
            ("Executed by", doc["executed_by"]),
            ("Executed at", doc["created_at"]),
            ("Approval", f"{approval['approval_id']} decided by {approval.get('decided_by')} "
                         f"at {approval.get('decided_at')}: {approval.get('decision_reason')}"),
            ("Break glass", "YES" if doc.get("break_glass") else "no"),
            ("Request sha256", doc["request_sha256"]),
        ],
        [("Controls", list(doc["controls"])), ("Evidence", list(doc["evidence_refs"]))],
    )


def rollback_request_markdown(doc: dict[str, Any]) -> bytes:
    return _md(
        f"Rollout rollback request {doc['request_id']}",
        [
            ("Promotion execution", doc["promotion_execution_id"]),
            ("Rollout", doc["rollout_id"]),
            ("Rings", f"{doc['promoted_ring']} -> {doc['previous_ring']}"),
            ("Reason", doc["reason"]),
            ("Requested by", doc["requested_by"]),
            ("Approval", doc["approval"]["approval_id"]),
        ],
    )


def rollback_markdown(doc: dict[str, Any]) -> bytes:
    ring = doc["ring_rollback"]
    return _md(
        f"Rollout rollback execution {doc['rollback_id']}",
        [
            ("Promotion execution", doc["promotion_execution_id"]),
            ("Rollout", doc["rollout_id"]),
            ("Rings", f"{ring['from']} -> {ring['to']}"),
            ("Reason", doc["rollback_reason"]),
            ("Executed by", doc["executed_by"]),
            ("Executed at", doc["created_at"]),
            ("Approval", doc["approval"]["approval_id"]),
        ],
        [("Controls", list(doc["controls"])), ("Evidence", list(doc["evidence_refs"]))],
    )


# --- audit events (§4.14) --------------------------------------------------------------------------


def promotion_audit_event(execution: dict[str, Any]) -> dict[str, Any]:
    ring = execution["ring_advancement"]
    approval = execution.get("approval") or {}
    rollout_id = execution["rollout_id"]
    return {
        "schema_version": PROMOTION_AUDIT_SCHEMA,
        "product": "CAVRA",
        "event_type": PROMOTION_AUDIT_EVENT_TYPE,
        "timestamp": execution["created_at"],
        "severity": "high",
        "execution_id": execution["execution_id"],
        "rollout_id": rollout_id,
        "request_id": execution["request_id"],
        "approval_id": execution["approval_id"],
        "approval_state": approval.get("state"),
        "change_record": execution["change_record"],
        "execution_status": execution["execution_status"],
        "environment": execution.get("environment") or execution.get("execution_environment"),
        "current_ring": ring["from"],
        "target_ring": ring["to"],
        "release": execution["release"],
        "deployment_targets": [t["id"] for t in execution["deployment_targets"]],
        "rollback_evidence_refs": execution["rollback_evidence_refs"],
        "rollback_reference_count": len(execution["rollback_evidence_refs"]),
        "break_glass": bool(execution.get("break_glass")),
        "audit_links": {
            "rollout": f"rollout://{rollout_id}",
            "promotion_request": f"promotion-request://{execution['request_id']}",
            "promotion_execution": f"promotion-execution://{execution['execution_id']}",
            "approval": f"approval://{execution['approval_id']}",
            "change": f"change://{execution['change_record']}",
        },
        "controls": execution["controls"],
        "raw_execution": execution,
    }


def rollback_audit_event(rollback: dict[str, Any]) -> dict[str, Any]:
    ring = rollback["ring_rollback"]
    approval = rollback.get("approval") or {}
    rollout_id = rollback["rollout_id"]
    return {
        "schema_version": ROLLBACK_AUDIT_SCHEMA,
        "product": "CAVRA",
        "event_type": ROLLBACK_AUDIT_EVENT_TYPE,
        "timestamp": rollback["created_at"],
        "severity": "critical",
        "rollback_id": rollback["rollback_id"],
        "promotion_execution_id": rollback["promotion_execution_id"],
        "rollout_id": rollout_id,
        "approval_id": rollback["approval_id"],
        "approval_state": approval.get("state"),
        "change_record": rollback["change_record"],
        "rollback_status": rollback["rollback_status"],
        "rollback_reason": rollback["rollback_reason"],
        "environment": rollback.get("environment") or rollback.get("execution_environment"),
        "current_ring": ring["from"],
        "target_ring": ring["to"],
        "release": rollback["release"],
        "deployment_targets": [t["id"] for t in rollback["deployment_targets"]],
        "rollback_evidence_refs": rollback["rollback_evidence_refs"],
        "rollback_reference_count": len(rollback["rollback_evidence_refs"]),
        "audit_links": {
            "rollout": f"rollout://{rollout_id}",
            "promotion_execution": f"promotion-execution://{rollback['promotion_execution_id']}",
            "rollback_execution": f"rollback-execution://{rollback['rollback_id']}",
            "approval": f"approval://{rollback['approval_id']}",
            "change": f"change://{rollback['change_record']}",
        },
        "controls": rollback["controls"],
        "raw_rollback": rollback,
    }


def audit_provider_files(
    event: dict[str, Any],
    *,
    splunk_index: str = "cavra",
    datadog_service: str = "cavra",
    itsm_project_key: str = "CAVRA",
) -> dict[str, dict[str, Any]]:
    """The reference's per-provider export payloads (§4.14) for one audit event, by file name."""
    rollback = event["schema_version"] == ROLLBACK_AUDIT_SCHEMA
    event_id = event["rollback_id"] if rollback else event["execution_id"]
    kind = "rollout-rollback" if rollback else "rollout-promotion"
    state = event.get("rollback_status") if rollback else event.get("execution_status")
    timestamp = parse_iso(event["timestamp"], where="audit event timestamp")
    headline = (
        f"CAVRA rollout rollback audit: {event['rollout_id']} {event['current_ring']} -> {event['target_ring']}"
        if rollback
        else f"CAVRA rollout promotion audit: {event['rollout_id']} -> {event['target_ring']}"
    )
    description = dumps_canonical({k: v for k, v in event.items() if k not in ("raw_execution", "raw_rollback")})
    return {
        "splunk-hec-events.json": {
            "events": [
                {
                    "time": int(timestamp.timestamp()),
                    "host": "cavra",
                    "source": "cavra:release",
                    "sourcetype": f"cavra:{kind}:json",
                    "index": splunk_index,
                    "event": event,
                }
            ]
        },
        "sentinel-log-analytics.json": {
            "records": [
                {
                    "TimeGenerated": event["timestamp"],
                    "SourceSystem": "CAVRA",
                    "EventName": event["event_type"],
                    "ProductName": "CAVRA",
                    "ExecutionId": event_id,
                    "RolloutId": event["rollout_id"],
                    "ApprovalState": event.get("approval_state"),
                    "ExecutionStatus": state,
                    "Severity": event["severity"],
                    "RawEvent": event,
                }
            ]
        },
        "datadog-events.json": {
            "events": [
                {
                    "ddsource": "cavra",
                    "service": datadog_service,
                    "status": "error" if rollback else "warning",
                    "message": headline,
                    "tags": [
                        "product:cavra",
                        f"rollout_id:{event['rollout_id']}",
                        f"{'rollback_id' if rollback else 'execution_id'}:{event_id}",
                        f"approval_state:{event.get('approval_state')}",
                        f"target_ring:{event['target_ring']}",
                    ],
                    "attributes": event,
                }
            ]
        },
        "webhook-payload.json": {
            "schema_version": WEBHOOK_ROLLBACK_SCHEMA if rollback else WEBHOOK_PROMOTION_SCHEMA,
            "product": "CAVRA",
            "event_type": event["event_type"],
            "timestamp": event["timestamp"],
            "payload": event,
        },
        "jira-issue.json": {
            "fields": {
                "project": {"key": itsm_project_key},
                "summary": headline,
                "issuetype": {"name": "Task"},
                "labels": ["cavra", kind, "audit"],
                "description": description.decode("utf-8"),
            },
            "cavra_event": event,
        },
        "servicenow-change-task.json": {
            "short_description": headline,
            "description": description.decode("utf-8"),
            "category": "software",
            "subcategory": "release",
            "impact": "1" if rollback else "2",
            "urgency": "1" if rollback else "2",
            "correlation_id": event_id,
            "change_request": event["change_record"],
            "u_cavra_event": event,
        },
    }
