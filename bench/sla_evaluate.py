"""Benchmark: one scheduled SLA evaluation over 100,000 open work items and 10,000 routes.

What is timed (pure core, the part that scales with the inventory; delivery is per notification
and is the connector platform's benchmark):

1. ``build_report``: 100,000 handoffs (one provider each), every one at risk or breached, into the
   §9.5 report (sorted by severity rank, then age);
2. ``plan`` with an empty history: routing every item through 10,000 rules (one per release channel,
   ``continue: false``) into 10,000 notification groups, each with an escalation ladder;
3. ``apply`` of every planned send as successful, then ``plan`` again an hour later (the steady
   state of a 5-minute schedule: every group already notified, the governance rung due, reminders
   waiting) -- the run the cron deployment repeats.

    .venv/bin/python bench/sla_evaluate.py [--items 100000] [--routes 10000] [--json out.json]

Time: wall clock (``time.perf_counter``) and CPU of this process (``time.process_time``), per phase.
The budget is 10 s for one scheduled run (report + plan of step 3).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringward.core.remediation.handoff import HandoffProvider, RemediationHandoff, handoff_id_for
from ringward.core.sla.engine import Outcome, apply, plan
from ringward.core.sla.policy import SlaPolicy
from ringward.core.sla.report import build_report

NOW = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)


def handoffs(count: int, channels: int) -> list[RemediationHandoff]:
    out = []
    for n in range(count):
        request_id = f"err_{n:012x}"
        sha = hashlib.sha256(request_id.encode()).hexdigest()
        out.append(
            RemediationHandoff.model_construct(
                schema_version="cavra.endpoint-remediation-handoff.v1",
                handoff_id=handoff_id_for(request_id, ["jira"], sha),
                request_id=request_id,
                reconciliation_id=f"erc_{n:012x}",
                # ages 25 h .. 72 h: every item at risk or breached
                created_at=NOW - timedelta(hours=25 + n % 48),
                requested_by="bench",
                delivery_mode="manual",
                providers=(HandoffProvider.JIRA,),
                provider_count=1,
                action_count=1,
                approval_id=None,
                approval_state="approved",
                approval_required=False,
                release="1.4.2",
                channel=f"ch-{n % channels}",
                strategy="mixed",
                alert_level="warning",
                summary={},
                payloads={},
                controls=(),
                evidence_refs=(),
                request_sha256=sha,
                remediation_request={},
            )
        )
    return out


def policy(routes: int) -> SlaPolicy:
    return SlaPolicy.model_validate(
        {
            "group_wait": "0s",
            "owners": {"ops": {"receivers": ["pager"]}, "governance": {"receivers": ["jira-gov"]}},
            "rules": [
                {
                    "rule_id": f"r{i}",
                    "channels": [f"ch-{i}"],
                    "providers": ["slack"],
                    "owner": "ops",
                    "escalation_policy": "std",
                }
                for i in range(routes)
            ],
            "escalation_policies": {
                "std": {
                    "rungs": [
                        {"level": "owner", "after": "0m", "targets": [{"owner": "ops"}]},
                        {"level": "governance", "after": "60m", "targets": [{"owner": "governance"}]},
                    ]
                }
            },
        }
    )


def timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    items, pol = handoffs(args.items, args.routes), policy(args.routes)
    rows: dict[str, dict[str, float]] = {}

    report, w, c = timed(lambda: build_report(items, [], now=NOW))
    rows["report (first run)"] = {"wall_s": w, "cpu_s": c}
    first, w, c = timed(lambda: plan((), pol, report, NOW))
    rows["plan, empty history"] = {"wall_s": w, "cpu_s": c}
    outcomes = [Outcome(notification=n, ok=True, at=NOW) for n in first.notifications]
    history, w, c = timed(lambda: apply((), outcomes))
    rows["apply outcomes"] = {"wall_s": w, "cpu_s": c}
    later = NOW + timedelta(hours=1)
    report2, w1, c1 = timed(lambda: build_report(items, [], now=later))
    second, w2, c2 = timed(lambda: plan(history, pol, report2, later))
    rows["scheduled run: report"] = {"wall_s": w1, "cpu_s": c1}
    rows["scheduled run: plan"] = {"wall_s": w2, "cpu_s": c2}
    rows["scheduled run: total"] = {"wall_s": w1 + w2, "cpu_s": c1 + c2}
    result = {
        "items": args.items,
        "routes": args.routes,
        "groups": len({n.group_key for n in first.notifications}),
        "first_run_notifications": len(first.notifications),
        "history_events": len(history),
        "scheduled_run_notifications": len(second.notifications),
        "scheduled_run_waiting": len(second.waiting),
        "phases": rows,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "budget_s": 10.0,
        "within_budget": rows["scheduled run: total"]["wall_s"] <= 10.0,
    }
    for name, row in rows.items():
        print(f"{name:<26} {row['wall_s']:7.2f} s wall {row['cpu_s']:7.2f} s cpu")
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
