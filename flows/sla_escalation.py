"""``sla-escalation``: the scheduled SLA run (cron every 5 minutes): evaluate -> route -> deliver ->
escalate -> record, idempotent per schedule window; then, when the policy has an ``incidents``
section, the same over open incidents' response clocks (scope ``incidents``, its own run key).

The notify step takes the window's run key by compare-and-swap in the store; a re-run, or a second
worker running the same window, finds it taken and the flow ends Completed "window already run"
having sent nothing. Every send is also claimed by its decision key, so a manual ``ringward sla
notify`` racing the schedule cannot double-send either. Artifacts: open escalations per owner, and
what was sent, suppressed (and why) and is waiting; the owner digest (``sla-owner-digest``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed

from ringward.core.errors import RingwardError
from tasks.sla_escalation import sla_escalate, sla_evaluate, sla_incidents, sla_notify, sla_owner_digest, utc_now

__all__ = ["sla_escalation_flow"]


def _digest_artifact(digest: dict[str, Any]) -> None:
    lines = [f"# Owner digest at {digest['generated_at']} ({digest['alert_level']})", ""]
    for owner in digest["owners"]:
        lines.append(
            f"## {owner['owner']}: {owner['triggered_count']} unacknowledged, {owner['acknowledged_count']} "
            f"acknowledged, {owner['retry_count']} retrying"
        )
        lines += [
            f"- `{r['group_key']}` ({r['plan_id']}): {r['state']}, rung {r['escalation_level'] or '-'}, "
            f"ack SLO {r['acknowledgement_slo_state']}"
            for r in owner["routes"]
        ]
    if len(lines) == 2:
        lines.append("No open escalation.")
    create_markdown_artifact(key="sla-owner-digest", markdown="\n".join(lines))


def _artifacts(notified: dict[str, Any], escalated: dict[str, Any], incidents: dict[str, Any] | None = None) -> None:
    sent = [*notified["sent"], *escalated["sent"], *(incidents["sent"] if incidents else [])]
    failed = [*notified["failed"], *escalated["failed"], *(incidents["failed"] if incidents else [])]
    rows = [{"result": "sent", **{k: str(v) for k, v in r.items()}} for r in sent]
    rows += [{"result": "FAILED", **{k: str(v) for k, v in r.items()}} for r in failed]
    rows += [
        {
            "result": "suppressed",
            "group_key": s["group_key"],
            "receiver": str(s["receiver"]),
            "reason": s["code"],
            "level": s["subject"],
            "key": s["detail"][:200],
        }
        for s in [*escalated["suppressed"], *(incidents["suppressed"] if incidents else [])]
    ]
    create_table_artifact(
        key="sla-sent-and-suppressed",
        table=rows or [{"result": "nothing due"}],
        description=f"SLA window {notified['window']}: sent, failed, suppressed and why",
    )
    lines = [f"# Open escalations at {escalated['at']}", ""]
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for source in (escalated, incidents or {}):
        for owner, rows in (source.get("open_incidents_by_owner") or {}).items():
            by_owner.setdefault(owner, []).extend(rows)
    for owner, rows in sorted(by_owner.items()):
        lines.append(f"## {owner}")
        for i in rows:
            ack = f", acknowledged by {i['acknowledged_by']}" if i["acknowledged_by"] else ""
            lines.append(
                f"- `{i['group_key']}`: {i['state']}{ack}; rung {i['level'] or '-'}; "
                f"ack SLO {i['acknowledgement_slo_state']}; {len(i['alerts'])} item(s)"
            )
    if len(lines) == 2:
        lines.append("No open escalations.")
    create_markdown_artifact(key="sla-open-escalations", markdown="\n".join(lines))


@flow(name="sla-escalation", log_prints=True)
def sla_escalation_flow(
    handoffs: list[str] | str,
    policy_path: str,
    config_path: str,
    warning_hours: float = 24,
    critical_hours: float = 48,
    interval_minutes: int = 5,
    at: datetime | None = None,
    actor: str = "ringward-sla",
) -> State:
    """One scheduled SLA run for the window containing ``at`` (default now). ``handoffs``: handoff and
    handoff-status JSON files or directories; ``interval_minutes`` must match the schedule (it sizes
    the window whose run key is taken)."""
    now = at or utc_now()
    sources = [handoffs] if isinstance(handoffs, str) else list(handoffs)
    try:
        report = sla_evaluate(sources, now, warning_hours, critical_hours, actor)
        notified = sla_notify(report, policy_path, config_path, now, interval_minutes, actor)
        if notified["skipped_window"]:
            return Completed(message=f"window {notified['window']} already run; nothing sent", data=notified)
        escalated = sla_escalate(report, policy_path, config_path, now, interval_minutes, actor)
        incidents = sla_incidents(policy_path, config_path, now, interval_minutes, actor)
        digest = sla_owner_digest(policy_path, report, now)
    except RingwardError as exc:
        return Failed(message=f"sla-escalation: {exc.message}", data={"refused": True, "message": exc.message})
    _artifacts(notified, escalated, incidents)
    _digest_artifact(digest)
    result = {"window": notified["window"], "report_id": report["report_id"], "notify": notified, "escalate": escalated,
              "incidents": incidents, "digest_id": digest["digest_id"]}
    extra = incidents or {"sent": [], "failed": [], "suppressed": []}
    failed = len(notified["failed"]) + len(escalated["failed"]) + len(extra["failed"])
    message = (
        f"window {notified['window']}: {len(notified['sent']) + len(escalated['sent']) + len(extra['sent'])} sent, "
        f"{failed} failed, {len(escalated['suppressed']) + len(extra['suppressed'])} suppressed"
    )
    return Failed(message=message, data=result) if failed else Completed(message=message, data=result)
