"""Channel promotion flows: one flow per step, each returning the result dict the CLI prints.

- ``request-channel-promotion``: the signed request and its pending approval; emits
  ``ringward.promotion.requested`` so automations can notify approvers.
- ``export-endpoint``: consumes the approval, raises the channel's high-water mark, writes the export;
  ``break_glass_approval`` lets it run outside its promotion window (consumed in the same decision).
- ``deliver-endpoint-export``: publishes an export to Jamf / Intune / Linux fleet destinations; ends
  Failed (with its result) when a destination did not take it.
- ``validate-channel-upgrade``: ``release validate-upgrade --channel``.

Each publishes a markdown summary and a table artifact under a stable key. A refused step ends the
flow run Failed carrying the refusal (``{"refused": true, "errors": [...]}``; its evidence record
is already written); front doors re-raise it as the same one-line error with :func:`raise_refusal`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed

from flows._common import current_flow_run_id, emit, final_state, publish_result, unwrap, utc_now
from ringward.operations.promotion.channel_ops import requested_event
from tasks.promotion_channel import (
    REFUSAL,
    deliver_endpoint_export,
    export_endpoint,
    raise_refusal,
    request_channel_promotion,
    validate_channel_upgrade,
)

__all__ = [
    "deliver_endpoint_export_flow",
    "export_endpoint_flow",
    "raise_refusal",
    "request_channel_promotion_flow",
    "validate_channel_upgrade_flow",
]

REQUEST_KEY = "channel-promotion-request"
EXPORT_KEY = "endpoint-management-export"
PUBLICATION_KEY = "endpoint-management-publication"


def _step(state: State, title: str) -> tuple[dict[str, Any], State | None]:
    """The task's result, and the Failed state to end the flow with when the step was refused."""
    result = dict(unwrap(state))
    if result.get(REFUSAL):
        return result, Failed(message=f"{title}: refused ({result['errors'][0]['message'][:300]})", data=result)
    return result, None


def _publish(key: str, title: str, lines: list[str], rows: list[dict[str, Any]]) -> None:
    create_markdown_artifact(markdown="\n".join([f"# {title}", "", *lines]) + "\n", key=key, description=title)
    create_table_artifact(table=rows or [{"-": "nothing"}], key=f"{key}-table", description=title)


@flow(name="request-channel-promotion", log_prints=True)
def request_channel_promotion_flow(
    package_dir: str,
    channel: str,
    target_ring: str,
    requester: str,
    signing_key: str,
    trust_root: str,
    expires_in: str = "24h",
    quorum: int = 1,
    approver_group: str | None = None,
    output: str | None = None,
    now: datetime | None = None,
) -> State:
    params = {"package_dir": package_dir, "channel": channel, "target_ring": target_ring, "requester": requester,
              "signing_key": signing_key, "trust_root": trust_root, "expires_in": expires_in, "quorum": quorum,
              "approver_group": approver_group, "output": output}
    result, refused = _step(request_channel_promotion(params, now or utc_now(), current_flow_run_id(),
                                                      return_state=True), "request-channel-promotion")
    if refused is not None:
        return refused
    title = f"channel promotion request {result['request_id']}"
    _publish(
        REQUEST_KEY, title,
        [f"**{result['runtime']} {result['version']}** -> `{channel}->{target_ring}`, requested by {requester}",
         "", f"Approval `{result['approval_id']}` pending until {result['expires_at']} (quorum {result['quorum']}).",
         "", f"Request: `{result['output_dir']}`; evidence record `{result['evidence']['evidence_id']}`."],
        [{k: result[k] for k in ("request_id", "channel", "target_ring", "version", "approval_id",
                                 "approval_state", "expires_at", "subject_digest")}],
    )
    emit(*requested_event(result))
    return Completed(message=f"requested {result['request_id']}", data=result)


@flow(name="export-endpoint", log_prints=True)
def export_endpoint_flow(
    package_dir: str,
    channel: str,
    promotion_request: str,
    trust_root: str,
    actor: str,
    output: str,
    provider: str = "all",
    windows: str | None = None,
    now: datetime | None = None,
    break_glass_approval: str | None = None,
) -> State:
    params = {"package_dir": package_dir, "channel": channel, "provider": provider,
              "promotion_request": promotion_request, "trust_root": trust_root, "actor": actor, "output": output,
              "windows": windows, "break_glass_approval": break_glass_approval}
    result, refused = _step(export_endpoint(params, now or utc_now(), current_flow_run_id(), return_state=True),
                            "export-endpoint")
    if refused is not None:
        return refused
    mark = result["high_water_mark"]
    _publish(
        EXPORT_KEY, f"endpoint export {result['export_id']}",
        [f"**{result['runtime']} {result['version']}** exported for {', '.join(result['providers'])} on "
         f"`{channel}->{result['target_ring']}`" + (" (rollback)" if result["rollback"] else ""),
         "", f"Approval `{result['approval_id']}` consumed; high-water mark {mark['version'] if mark else '-'}.",
         *(["", f"**Break glass**: approval `{result['break_glass_approval_id']}` consumed; the promotion window "
                f"was closed ({result['window']['reason']})."] if result.get("break_glass") else []),
         "", f"Export: `{result['output_dir']}`; evidence record `{result['evidence']['evidence_id']}`."],
        [{"file": name} for name in result["files"]],
    )
    return Completed(message=f"exported {result['export_id']}", data=result)


@flow(name="deliver-endpoint-export", log_prints=True)
def deliver_endpoint_export_flow(
    export_manifest: str,
    config: str,
    actor: str,
    provider: str = "all",
    now: datetime | None = None,
) -> State:
    params = {"export_manifest": export_manifest, "config": config, "provider": provider, "actor": actor}
    result, refused = _step(deliver_endpoint_export(params, now or utc_now(), current_flow_run_id(),
                                                    return_state=True), "deliver-endpoint-export")
    if refused is not None:
        return refused
    _publish(
        PUBLICATION_KEY, f"endpoint publication {result['publication_id']}",
        [f"Export `{result['export_id']}` ({result['version']}, channel `{result['channel']}`): "
         f"**{'PUBLISHED' if result['success'] else 'FAILED'}**",
         "", f"Evidence record `{result['evidence']['evidence_id']}`."],
        [{k: r[k] for k in ("destination", "provider", "status", "status_code", "attempts", "error")}
         for r in result["deliveries"]],
    )
    if not result["success"]:
        result = {**result, "errors": [{"code": "delivery-failed", "message": f"not delivered to: "
                                        f"{', '.join(result['failed'])}"}]}
    return final_state(result, f"deliver-endpoint-export {result['export_id']}")


@flow(name="validate-channel-upgrade", log_prints=True)
def validate_channel_upgrade_flow(
    previous_dir: str,
    candidate_dir: str,
    trust_root: str,
    channel: str,
    allow_same_version: bool = False,
    now: datetime | None = None,
    record: bool = True,
    profile: str = "ringward",
) -> State:
    params = {"previous_dir": previous_dir, "candidate_dir": candidate_dir, "trust_root": trust_root,
              "channel": channel, "allow_same_version": allow_same_version, "now": now or utc_now(), "record": record,
              "profile": profile}
    result, refused = _step(validate_channel_upgrade(params, current_flow_run_id(), return_state=True),
                            "validate-channel-upgrade")
    if refused is not None:
        return refused
    title = f"validate-upgrade {previous_dir} -> {candidate_dir} on channel {channel}"
    publish_result("upgrade-validation", title, result)
    return final_state(result, title)
