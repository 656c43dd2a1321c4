"""`ringward evidence ...`: verify the chain and its files, checkpoint the head, search, show,
and import/export the reference system's ``metadata.json``.

Exit codes: 0 ok, 1 chain broken / checkpoint rejected / not found, 2 bad input.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Verify, checkpoint, search and export evidence.",
)

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")


def _actor(value: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return value or default_actor()


def _time(value: str | None, option: str) -> datetime | None:
    """ISO-8601 with an offset (``Z`` ok), or a plain date meaning midnight UTC."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option}: expected an ISO-8601 time such as 2026-01-01T00:00:00Z, found {value!r}") from None
    if parsed.utcoffset() is None:
        raise InputError(f"{option}: {value!r} has no UTC offset (append Z)")
    return parsed


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


@app.command("verify")
def verify(
    files: bool = typer.Option(True, "--files/--no-files", help="Also re-hash every bundle's files (default)."),
    evidence_root: Path | None = typer.Option(
        None,
        "--evidence-root",
        help="Root of evidence bundles (default $RINGWARD_EVIDENCE_ROOT or <home>/evidence).",
    ),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A checkpoint file the chain must still match."),
    trust_root: Path | None = typer.Option(
        None,
        "--trust-root",
        envvar="RINGWARD_TRUST_ROOT",
        help="Pinned trust root whose keys may sign checkpoints.",
    ),
    role: str = typer.Option("release", "--role", help="Trust-root role of checkpoint signers."),
    public_key: list[Path] = typer.Option([], "--public-key", help="Pinned checkpoint public key (repeatable)."),
    jobs: int = typer.Option(
        0, "--jobs", help="Worker processes (0: automatic -- one per CPU for chains of 200,000+ records)."
    ),
    record: bool = typer.Option(False, "--record", help="Append the result as an evidence record."),
    actor: str | None = typer.Option(None, "--actor", help="Actor named on --record (default: $RINGWARD_ACTOR/user)."),
    json_output: bool = JSON,
) -> None:
    """Re-walk the hash chain and every bundle's checksums; report the first break."""
    from ringward.operations.common.files import check_input_path
    from ringward.operations.evidence import evidence_ops

    loaded = trusted = None
    if evidence_root is not None and os.path.lexists(evidence_root):  # a missing root is an empty one
        check_input_path(evidence_root, option="--evidence-root", kind="dir")
    if checkpoint is not None:
        check_input_path(checkpoint, option="--checkpoint")
        loaded = evidence_ops.load_checkpoint(checkpoint)
        trusted = evidence_ops.checkpoint_trusted_keys(trust_root=trust_root, public_keys=public_key, role=role)
    with _store() as store:
        report = evidence_ops.verify_evidence(
            store,
            root=evidence_root,
            check_files=files,
            checkpoint=loaded,
            checkpoint_source=str(checkpoint),
            trusted_keys=trusted,
            jobs=jobs or None,
        )
        recorded = None
        if record:
            recorded = evidence_ops.record_verification(store, report, actor=_actor(actor))
    if json_output:
        doc = report.model_dump(mode="json")
        doc["evidence_id"] = None if recorded is None else recorded.id
        print_json(doc)
    else:
        typer.echo(("OK: " if report.ok else "BROKEN: ") + report.summary())
        if report.checkpoint_head_id is not None and report.ok:
            typer.echo(f"checkpoint: record {report.checkpoint_head_id} matches (key {report.checkpoint_key_id})")
        if recorded is not None:
            typer.echo(f"recorded as evidence {recorded.id}")
    raise typer.Exit(0 if report.ok else 1)


@app.command("checkpoint")
def checkpoint(
    output: Path = typer.Option(..., "--output", help="Checkpoint file to write (refuses to overwrite)."),
    signing_key: Path | None = typer.Option(
        None, "--signing-key", help="Ed25519 PKCS#8 PEM; else $RINGWARD_SIGNING_KEY."
    ),
    trust_root: Path | None = typer.Option(
        None,
        "--trust-root",
        envvar="RINGWARD_TRUST_ROOT",
        help="Refuse keys this trust root does not pin for --role.",
    ),
    role: str = typer.Option("release", "--role", help="Trust-root role of checkpoint signers."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint file."),
    actor: str | None = typer.Option(None, "--actor", help="Who signs (default: $RINGWARD_ACTOR/user)."),
    deliver_config: Path | None = typer.Option(
        None,
        "--deliver",
        help="Also deliver the signed checkpoint as a ringward.evidence.checkpoint event to the "
        "destinations of this connectors file (a SIEM keeps an independent copy).",
    ),
    provider: str = typer.Option("all", "--provider", "-p", help="With --deliver: destinations (names/kinds)."),
    json_output: bool = JSON,
) -> None:
    """Walk the chain links, then sign the verified head with a trust-root key; a later
    `verify --checkpoint` checks against it. A broken chain is never signed (exit 1).

    Exit 1 when --deliver could not deliver to every selected destination (the file is written).
    """
    from ringward.operations.evidence import evidence_ops
    from ringward.operations.trust.keys import load_signing_key

    config = None
    if deliver_config is not None:
        from ringward.operations.delivery import delivery_ops
        config = delivery_ops.load_connector_config(deliver_config)  # bad config fails before signing
        delivery_ops.select_destinations(config, provider)
    key = load_signing_key(signing_key)
    if key is None:
        raise InputError("--signing-key: no key given and $RINGWARD_SIGNING_KEY is not set")
    if trust_root is not None:
        evidence_ops.check_signing_key_trusted(key, trust_root=trust_root, role=role)
    with _store() as store:
        result = evidence_ops.create_checkpoint(
            store, private_key=key, actor=_actor(actor), output=output, overwrite=force
        )
        run = None
        if config is not None:
            from ringward.operations.delivery import delivery_ops
            run = delivery_ops.deliver_event(
                evidence_ops.checkpoint_event(result),
                config,
                store=store,
                providers=provider,
                source="ringward_evidence_checkpoint",
            )
    if json_output:
        document = result.to_document()
        if run is not None:
            document = {**document, "delivery": {**run.payload["delivery"], "evidence_id": run.evidence_id}}
        print_json(document)
    else:
        typer.echo(f"wrote {output}: head record {result.head_id} {result.head_hash[:16]}…")
        if run is not None:
            for row in run.summary_rows():
                typer.echo(
                    f"  {row['destination']} ({row['provider']}): {row['status']}"
                    + (f" - {row['error']}" if row["error"] else "")
                )
            verdict = "delivered" if run.success else "NOT delivered to every destination"
            typer.echo(f"checkpoint event {run.event.event_id} {verdict} (evidence {run.evidence_id})")
    if run is not None and not run.success:
        raise typer.Exit(1)


def _query(**values: Any) -> Any:
    from ringward.core.evidence.query import EvidenceQuery

    try:
        return EvidenceQuery(**{k: v for k, v in values.items() if v is not None or k == "total_limit"})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "query"
        raise InputError(f"--{field.replace('_', '-')}: {first['msg']}") from exc


@app.command("search")
def search(
    metadata_kind: str | None = typer.Option(None, "--metadata-kind", "--kind", help="Evidence kind."),
    rollout_status: str | None = typer.Option(None, "--rollout-status", "--status", help="Status."),
    environment: str | None = typer.Option(None, "--environment"),
    deployment_target: str | None = typer.Option(None, "--deployment-target"),
    target_ring: str | None = typer.Option(None, "--target-ring", "--ring"),
    channel: str | None = typer.Option(None, "--channel"),
    release_version: str | None = typer.Option(None, "--release-version"),
    runtime: str | None = typer.Option(None, "--runtime"),
    approval_id: str | None = typer.Option(None, "--approval-id"),
    approval_state: str | None = typer.Option(None, "--approval-state"),
    execution_status: str | None = typer.Option(
        None,
        "--execution-status",
        "--promotion-execution-status",
        "--rollback-execution-status",
        help="Execution status (the reference's promotion/rollback execution status).",
    ),
    provider: str | None = typer.Option(None, "--provider"),
    success: bool | None = typer.Option(None, "--success/--failure", help="Only successful / failed records."),
    actor: str | None = typer.Option(None, "--actor"),
    flow_run_id: str | None = typer.Option(None, "--flow-run-id"),
    since: str | None = typer.Option(None, "--since", help="created_at >= this ISO time (or date)."),
    until: str | None = typer.Option(None, "--until", help="created_at < this ISO time (or date)."),
    limit: int = typer.Option(50, "--limit", help="Page size (1-500)."),
    offset: int = typer.Option(0, "--offset", help="Skip this many matches."),
    before_id: int | None = typer.Option(None, "--before-id", help="Page cursor: only records older than this id."),
    oldest_first: bool = typer.Option(False, "--oldest-first", help="Oldest first instead of newest first."),
    total: str = typer.Option(
        "bounded",
        "--total",
        help="Count matches: bounded (stop at 1,000 matches or 15 ms; prints e.g. 1,000+), exact (every match; "
        "slow for "
        "broad filters on a big store) or none.",
    ),
    json_output: bool = JSON,
) -> None:
    """Search evidence with the reference's filters; pages instead of a fixed cap."""
    from ringward.core.evidence.query import DEFAULT_TOTAL_LIMIT

    if total not in ("bounded", "exact", "none"):
        raise InputError(f"--total: expected bounded, exact or none, found {total!r}")
    query = _query(
        kind=metadata_kind,
        status=rollout_status,
        environment=environment,
        deployment_target=deployment_target,
        ring=target_ring,
        channel=channel,
        release_version=release_version,
        runtime=runtime,
        approval_id=approval_id,
        approval_state=approval_state,
        execution_status=execution_status,
        provider=provider,
        success=success,
        actor=actor,
        flow_run_id=flow_run_id,
        created_from=_time(since, "--since"),
        created_to=_time(until, "--until"),
        limit=limit,
        offset=offset,
        before_id=before_id,
        order="oldest" if oldest_first else "newest",
        with_total=total != "none",
        total_limit=None if total == "exact" else DEFAULT_TOTAL_LIMIT,
    )
    with _store() as store:
        page = store.search_evidence(query)
    if json_output:
        print_json(page.to_document())
        return
    print_table(
        ["id", "created_at", "kind", "status", "target", "ring", "environment", "actor"],
        [
            [
                r.id,
                r.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                r.kind,
                r.subject.status,
                r.subject.deployment_target,
                r.subject.ring,
                r.subject.environment,
                r.actor,
            ]
            for r in page.items
        ],
    )
    more = f"; next page: --before-id {page.next_before_id}" if page.next_before_id else ""
    typer.echo(f"{len(page.items)} of {page.total_text()} matching record(s){more}")


@app.command("show")
def show(record_id: int = typer.Argument(..., help="Evidence record id."), json_output: bool = JSON) -> None:
    """One evidence record, with its payload and chain hashes."""
    from ringward.operations.evidence.evidence_ops import get_evidence

    with _store() as store:
        record = get_evidence(store, record_id)
    doc = record.to_document()
    if json_output:
        print_json(doc)
        return
    for key in (
        "id",
        "kind",
        "actor",
        "created_at",
        "flow_run_id",
        "bundle_dir",
        "previous_hash",
        "record_hash",
    ):
        typer.echo(f"{key}: {doc[key]}")
    for key, value in doc["subject"].items():
        if value is not None:
            typer.echo(f"subject.{key}: {value}")
    for artifact in record.artifacts:
        typer.echo(f"artifact: {artifact.name} {artifact.size_bytes} bytes sha256 {artifact.sha256}")
    typer.echo("payload:")
    print_json(record.payload)


@app.command("export")
def export(
    output: Path = typer.Argument(..., help="metadata.json to write (reference format)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    json_output: bool = JSON,
) -> None:
    """Export evidence as the reference system's metadata.json ({"items": [...]})."""
    from ringward.operations.evidence.evidence_ops import export_metadata_json

    with _store() as store:
        count = export_metadata_json(store, output, overwrite=force)
    if json_output:
        print_json({"output": str(output), "items": count})
    else:
        typer.echo(f"wrote {output}: {count} item(s)")


@app.command("import")
def import_(
    source: Path = typer.Argument(..., help="A reference metadata.json."),
    actor: str | None = typer.Option(None, "--actor", help="Actor named on the imported records."),
    json_output: bool = JSON,
) -> None:
    """Append the items of a reference metadata.json to the chain (already-recorded items are skipped;
    imports running at once still record each item once)."""
    from ringward.operations.evidence.evidence_ops import import_metadata_json

    with _store() as store:
        result = import_metadata_json(store, source, actor=_actor(actor))
    if json_output:
        print_json(result)
    else:
        typer.echo(f"imported {result['imported']} item(s), skipped {result['skipped']} already recorded")
