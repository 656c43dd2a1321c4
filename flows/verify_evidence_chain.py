"""Flow: verify the evidence chain and its files (scheduled daily), publish the result as
artifacts, record it as evidence, and fail the run when the chain is broken.

With ``checkpoint_dir`` an intact chain's head is then signed (``$RINGWARD_SIGNING_KEY``) and, with
``deliver_checkpoint_config``, sent to the SIEM: a daily, independently held proof of the head that
a later ``evidence verify --checkpoint`` checks. A broken chain is never checkpointed."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows._common import current_flow_run_id
from ringward.core.errors import EvidenceIntegrityError
from ringward.core.evidence.records import ChainReport
from ringward.operations.evidence.evidence_ops import DEFAULT_CHECKPOINT_ROLE, verification_draft
from ringward.operations.release.release_ops import default_actor
from tasks.evidence import checkpoint_evidence_chain_task, verify_evidence_chain_task, write_evidence

ARTIFACT_KEY = "evidence-chain-verification"


def _markdown(report: ChainReport, evidence_id: int | None) -> str:
    verdict = "INTACT" if report.ok else "BROKEN"
    lines = [f"# Evidence chain: {verdict}", "", report.summary(), ""]
    if report.first_break is not None:
        brk = report.first_break
        lines += [
            "| record | check | expected | found |",
            "|---|---|---|---|",
            f"| {brk.record_id} | {brk.check} | `{brk.expected}` | `{brk.found}` |",
            "",
        ]
    if report.checkpoint_head_id is not None:
        lines.append(f"Checkpoint: record {report.checkpoint_head_id}, key `{report.checkpoint_key_id}`")
    if evidence_id is not None:
        lines.append(f"Recorded as evidence record `{evidence_id}`.")
    return "\n".join(lines)


@flow(name="verify-evidence-chain", log_prints=True)
def verify_evidence_chain(
    check_files: bool = True,
    evidence_root: str | None = None,
    checkpoint: str | None = None,
    trust_root: str | None = None,
    role: str = DEFAULT_CHECKPOINT_ROLE,
    record: bool = True,
    fail_on_break: bool = True,
    jobs: int | None = None,
    checkpoint_dir: str | None = None,
    deliver_checkpoint_config: str | None = None,
    checkpoint_provider: str = "all",
) -> dict[str, Any]:
    logger = get_run_logger()
    report = verify_evidence_chain_task(check_files, evidence_root, checkpoint, trust_root, role, jobs)
    flow_run_id = current_flow_run_id()
    evidence_id = None
    if record:
        written = write_evidence([verification_draft(report, actor=default_actor(), flow_run_id=flow_run_id)])
        evidence_id = written[0]["evidence_id"]
    create_markdown_artifact(markdown=_markdown(report, evidence_id), key=ARTIFACT_KEY, description="Evidence chain")
    create_table_artifact(
        table=[
            {
                "ok": report.ok,
                "records_checked": report.records_checked,
                "bundles_checked": report.bundles_checked,
                "files_checked": report.files_checked,
                "head_id": report.head_id,
                "first_break": "" if report.first_break is None else report.first_break.message(),
                "elapsed_s": report.elapsed_s,
            }
        ],
        key=f"{ARTIFACT_KEY}-summary",
        description="Evidence chain verification summary",
    )
    logger.info(report.summary())
    result = {**report.model_dump(mode="json"), "evidence_id": evidence_id, "checkpoint": None}
    if not report.ok and fail_on_break:
        raise EvidenceIntegrityError(report.summary())
    if report.ok and checkpoint_dir:
        made = checkpoint_evidence_chain_task(
            checkpoint_dir, report, deliver_checkpoint_config, checkpoint_provider, trust_root, role, flow_run_id
        )
        result["checkpoint"] = made
        delivery = made["delivery"]
        if delivery is not None and not delivery["success"]:
            logger.warning("checkpoint %s written but not delivered to every destination", made["path"])
    return result
