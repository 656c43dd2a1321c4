"""Republish and rollback actions of an executed remediation, run through the promotion domain.

An executed remediation request (its own approval consumed once, :func:`execute_remediation`) leaves
two kinds of work: handoff work items (delivered by ``remediation handoff``) and the actions that
change what endpoints run -- ``republish_endpoint_export`` (and ``republish_or_rollback_runtime``
under the ``mixed`` strategy when no rollback is named) and ``rollback_runtime`` (and the mixed
action when a rollback is named). Those run here, each through the promotion domain's own operation
and **under its own approval**, exactly as the promotion commands require:

- **republish** = publish the channel's approved endpoint export again
  (:func:`ringward.operations.promotion.endpoint_ops.deliver_endpoint_export`): only an export that
  consumed its channel-promotion approval can be published, the export must be of the request's
  release and channel, and delivery is idempotent per destination;
- **rollback** = roll back the rollout promotion execution that put the drifted release on the ring
  (:func:`ringward.operations.promotion.rollout_execution.execute_rollback`): its approval -- opened
  by ``ringward rollout request-rollback`` and approved by someone other than its requester -- is
  consumed there, once.

Whatever is missing is reported, never silently done: no export named, no rollback named, or a
rollback approval still pending -> ``awaiting_approval`` with the command that supplies it; a
promotion refusal (binding, expiry, consumed, held channel, forged export) -> ``refused``; a
destination that did not take the publication -> ``failed`` (run again). Each outcome is an
evidence record (``endpoint-drift-remediation-action``) and a row per (execution, operation) in the
remediation state; an operation that is ``done`` is not run again. ``ringward remediation actions``
resumes the open ones later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.errors import (
    BindingMismatchError,
    InputError,
    NotFoundError,
    RingwardError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject

if TYPE_CHECKING:
    from ringward.store import Store

ACTIONS: str = "remediation.promotion-actions"
KIND_ACTION = "endpoint-drift-remediation-action"
ACTION_SCHEMA = "ringward.remediation-promotion-action.v1"
REPUBLISH = "republish"
ROLLBACK = "rollback"
DONE = "done"
AWAITING = "awaiting_approval"
REFUSED = "refused"
FAILED = "failed"
_EXECUTION_ID = re.compile(r"^ere_[0-9a-f]{12}$")
_APPROVAL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class PromotionInputs:
    """What the promotion operations need (each names the thing its own approval covers)."""

    republish_export: Path | None = None
    connectors: Path | None = None
    publish_provider: str = "all"
    rollback_execution: Path | None = None
    rollback_approval: str | None = None
    rollback_output: Path | None = None

    def check(self) -> None:
        """Raises InputError for incomplete options (exit 2)."""
        if self.republish_export is not None and self.connectors is None:
            raise InputError("--config: required with --republish-export (the connector configuration that "
                             "publishes the export)")
        if self.rollback_approval is not None and self.rollback_execution is None:
            raise InputError("--rollback-execution: required with --rollback-approval (the promotion execution to "
                             "roll back)")
        if self.rollback_approval is not None and not _APPROVAL_ID.fullmatch(self.rollback_approval):
            raise InputError(f"--rollback-approval: expected an approval id, found {self.rollback_approval[:80]!r}")


def plan(action_results: Sequence[Mapping[str, Any]], inputs: PromotionInputs) -> dict[str, list[str]]:
    """Operation -> the action ids it covers (only operations with actions)."""
    republish: list[str] = []
    rollback: list[str] = []
    for result in action_results:
        if result.get("work_item") != "promotion_flow":
            continue
        kind = result.get("action_type")
        action_id = str(result.get("action_id"))
        if kind == "rollback_runtime" or (kind == "republish_or_rollback_runtime" and inputs.rollback_execution):
            rollback.append(action_id)
        else:
            republish.append(action_id)
    return {op: ids for op, ids in ((REPUBLISH, republish), (ROLLBACK, rollback)) if ids}


def _same_version(a: str | None, b: str | None) -> bool:
    from ringward.core.common.versions import ReleaseVersion

    if a is None or b is None:
        return False
    try:
        return ReleaseVersion.parse(a.strip()) == ReleaseVersion.parse(b.strip())
    except (RingwardError, ValueError):
        return a.strip().lstrip("vV") == b.strip().lstrip("vV")


def _read_document(path: Path, option: str) -> Any:
    from ringward.core.common.jsonio import MAX_DOCUMENT_BYTES, loads_strict
    from ringward.operations.common.files import check_input_path, read_capped

    check_input_path(path, option=option)
    return loads_strict(read_capped(path, MAX_DOCUMENT_BYTES, source=f"{option} {path}"), source=f"{option} {path}")


def _outcome(op: str, ids: Sequence[str], status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"operation": op, "action_ids": list(ids), "action_count": len(ids), "status": status,
            "message": message, **extra}


def _refused(op: str, ids: Sequence[str], exc: RingwardError) -> dict[str, Any]:
    return _outcome(op, ids, REFUSED, exc.message, error={"code": exc.code, "type": type(exc).__name__})


def _republish(store: Store, request: Mapping[str, Any], ids: Sequence[str], inputs: PromotionInputs, *,
               execution_id: str, actor: str, now: datetime, flow_run_id: str | None) -> dict[str, Any]:
    from ringward.core.errors import MalformedDocumentError
    from ringward.core.promotion.endpoint_export import parse_export_manifest
    from ringward.operations.promotion.endpoint_ops import deliver_endpoint_export

    version = str(request["release"]["version"])
    channel = request.get("channel")
    if inputs.republish_export is None or inputs.connectors is None:
        return _outcome(REPUBLISH, ids, AWAITING,
                        f"awaiting the approved endpoint export of release {version} on channel {channel or '?'}: "
                        "request and approve a channel promotion (`ringward channel request-promotion`, "
                        "`ringward approval approve`), export it (`ringward endpoint export`), then run "
                        f"`ringward remediation actions {execution_id} --republish-export MANIFEST --config "
                        "connectors.yaml`")
    try:
        try:
            manifest = parse_export_manifest(_read_document(inputs.republish_export, "--republish-export"),
                                             source=str(inputs.republish_export))
        except MalformedDocumentError as exc:
            raise InputError(exc.message) from exc
        if not _same_version(manifest.release.version, version):
            raise BindingMismatchError(f"--republish-export {inputs.republish_export}: release "
                                       f"{manifest.release.version}, expected {version} (the remediation request's "
                                       "release)")
        if channel is not None and manifest.channel != channel:
            raise BindingMismatchError(f"--republish-export {inputs.republish_export}: channel {manifest.channel}, "
                                       f"expected {channel} (the remediation request's channel)")
        published = deliver_endpoint_export(store, manifest_path=inputs.republish_export,
                                            config_path=inputs.connectors, actor=actor, now=now,
                                            provider=inputs.publish_provider, flow_run_id=flow_run_id)
    except InputError:
        raise
    except RingwardError as exc:
        return _refused(REPUBLISH, ids, exc)
    result = {"publication_id": published["publication_id"], "export_id": published["export_id"],
              "approval_id": published["approval_id"], "providers": published["providers"],
              "failed": published["failed"], "evidence_id": published["evidence"]["evidence_id"]}
    if not published["success"]:
        return _outcome(REPUBLISH, ids, FAILED,
                        f"export {published['export_id']}: {', '.join(published['failed'])} did not take the "
                        "publication; run `ringward remediation actions` again (nothing is sent twice)",
                        result=result)
    return _outcome(REPUBLISH, ids, DONE,
                    f"republished export {published['export_id']} (channel promotion approval "
                    f"{published['approval_id']}) as {published['publication_id']}", result=result)


def _rollback(store: Store, request: Mapping[str, Any], ids: Sequence[str], inputs: PromotionInputs, *,
              execution_id: str, actor: str, trust_root: Path, now: datetime,
              flow_run_id: str | None) -> dict[str, Any]:
    from ringward.core.approvals.rules import ApprovalState, Decision
    from ringward.operations.promotion.rollout_execution import execute_rollback

    version = str(request["release"]["version"])
    if inputs.rollback_execution is None:
        return _outcome(ROLLBACK, ids, AWAITING,
                        "awaiting a rollback of the rollout promotion that put the drifted runtime on the ring: "
                        "`ringward rollout request-rollback EXECUTION ...`, approval by another person, then "
                        f"`ringward remediation actions {execution_id} --rollback-execution EXECUTION "
                        "--rollback-approval ID`")
    if inputs.rollback_approval is None:
        return _outcome(ROLLBACK, ids, AWAITING,
                        f"rollback of {inputs.rollback_execution} awaits its own approval: open it with "
                        "`ringward rollout request-rollback`, have someone else approve it, then pass "
                        "--rollback-approval ID")
    try:
        document = _read_document(inputs.rollback_execution, "--rollback-execution")
        release = document.get("release") if isinstance(document, dict) else None
        found = release.get("version") if isinstance(release, dict) else None
        covered = {str(a.get("observed_version")) for a in request.get("actions", [])
                   if a.get("action_id") in ids and a.get("observed_version")}
        if not isinstance(found, str) or not (_same_version(found, version)
                                              or any(_same_version(found, v) for v in covered)):
            raise BindingMismatchError(
                f"--rollback-execution {inputs.rollback_execution}: release {found!r} is neither the remediation "
                f"request's release {version} nor a version the drifted endpoints run ({', '.join(sorted(covered))})")
        approval = store.approvals.get(inputs.rollback_approval)
        effective = approval.effective_state(now)
        if effective is ApprovalState.PENDING:
            approvers = len({v.actor for v in approval.votes if v.decision is Decision.APPROVE})
            return _outcome(ROLLBACK, ids, AWAITING,
                            f"rollback approval {approval.approval_id} is pending ({approvers}/{approval.quorum} "
                            "approvals); run `ringward remediation actions` again once it is approved",
                            approval_id=approval.approval_id)
        rolled = execute_rollback(store, execution_path=inputs.rollback_execution,
                                  approval_id=inputs.rollback_approval, actor=actor, trust_root=trust_root,
                                  output=inputs.rollback_output, now=now, flow_run_id=flow_run_id)
    except InputError:
        raise
    except RingwardError as exc:
        return _refused(ROLLBACK, ids, exc)
    return _outcome(ROLLBACK, ids, DONE,
                    f"rolled back {rolled['promotion_execution_id']} as {rolled['rollback_id']} under approval "
                    f"{rolled['approval_id']}",
                    result={"rollback_id": rolled["rollback_id"], "approval_id": rolled["approval_id"],
                            "promotion_execution_id": rolled["promotion_execution_id"],
                            "rollback_path": rolled["rollback_path"], "channels": rolled["channels"],
                            "evidence_id": rolled["evidence"]["evidence_id"]})


def execution_id_of(reference: str) -> str:
    """An execution id (``ere_…``) or the path of an execution record."""
    if _EXECUTION_ID.fullmatch(reference):
        return reference
    path = Path(reference)
    if not path.exists():
        raise InputError(f"EXECUTION {reference}: expected an execution id (ere_<12 hex>) or an execution JSON file")
    document = _read_document(path, "EXECUTION")
    value = document.get("execution_id") if isinstance(document, dict) else None
    if not isinstance(value, str) or not _EXECUTION_ID.fullmatch(value):
        raise InputError(f"EXECUTION {reference}: execution_id expected ere_<12 hex>, found {value!r}")
    return value


def run_promotion_actions(
    store: Store,
    *,
    execution_id: str,
    actor: str,
    trust_root: Path,
    now: datetime,
    inputs: PromotionInputs | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Run (or report as awaiting their approval) the republish / rollback actions of an executed
    remediation (see the module docstring). ``result["complete"]``: every operation is done.

    Raises:
        InputError: incomplete or unreadable options (exit 2).
        NotFoundError: no such execution recorded (recorded, exit 1).
        StoreConflictError: the same operation was recorded concurrently (re-run).
    """
    from ringward.core.promotion.channels import check_actor
    from ringward.operations.promotion.channel_ops import record_refusal
    from ringward.operations.remediation.remediation_ops import state
    from ringward.store.remediation.state import EXECUTIONS, REQUESTS

    chosen = inputs or PromotionInputs()
    check_actor(actor)
    chosen.check()
    repo = state(store)
    entry = repo.get(EXECUTIONS, execution_id)
    request_entry = None if entry is None else repo.get(REQUESTS, str(entry.value["request_id"]))
    if entry is None or request_entry is None:
        error = NotFoundError(f"remediation execution {execution_id}: not recorded in this store "
                              "(execute the request with `ringward remediation execute` first)")
        record_refusal(store, KIND_ACTION, error, actor=actor, now=now, subject=EvidenceSubject(),
                       payload={"execution_id": execution_id}, flow_run_id=flow_run_id)
        raise error
    execution = entry.value
    request = request_entry.value["request"]
    subject = EvidenceSubject(release_version=request["release"]["version"], channel=request.get("channel"),
                              approval_id=execution.get("approval_id"))
    outcomes: list[dict[str, Any]] = []
    for op, ids in plan(execution["action_results"], chosen).items():
        key = f"{execution_id}/{op}"
        current = repo.get(ACTIONS, key)
        if current is not None and current.value.get("status") == DONE:
            outcomes.append({**current.value, "repeat": True})
            continue
        if op == REPUBLISH:
            outcome = _republish(store, request, ids, chosen, execution_id=execution_id, actor=actor, now=now,
                                 flow_run_id=flow_run_id)
        else:
            outcome = _rollback(store, request, ids, chosen, execution_id=execution_id, actor=actor,
                                trust_root=trust_root, now=now, flow_run_id=flow_run_id)
        outcome = {**outcome, "execution_id": execution_id, "request_id": execution["request_id"],
                   "recorded_at": now.isoformat(), "recorded_by": actor}
        draft = EvidenceDraft(
            kind=KIND_ACTION, actor=actor, flow_run_id=flow_run_id,
            subject=subject.model_copy(update={"status": outcome["status"], "success": outcome["status"] == DONE}),
            payload={"schema_version": ACTION_SCHEMA, "metadata_kind": KIND_ACTION,
                     "session_id": f"{execution_id}:{op}", **outcome,
                     "evidence_refs": [f"endpoint-remediation-execution://{execution_id}",
                                       f"endpoint-remediation-request://{execution['request_id']}"]},
        )
        (record,) = repo.decide([(ACTIONS, key, outcome, 0 if current is None else current.version)], [draft],
                                actor=actor, now=now)
        outcomes.append({**outcome, "evidence_id": str(record.id), "repeat": False})
    statuses = [o["status"] for o in outcomes]
    return {
        "schema_version": "ringward.remediation-promotion-actions.v1", "execution_id": execution_id,
        "request_id": execution["request_id"], "actions": outcomes,
        "complete": all(s == DONE for s in statuses),
        "awaiting": [o["operation"] for o in outcomes if o["status"] == AWAITING],
        "problems": [o["operation"] for o in outcomes if o["status"] in (REFUSED, FAILED)],
    }
