"""``ringward playbook ... --prefect``: the unauthorized-release playbook as two tracked flow runs on the
shared Prefect test server (the first stops awaiting the hold's approval, the second resumes under it),
writing the same evidence, step for step, as the in-process path does for the same situation on
another channel; every playbook record carries its flow-run id."""

from __future__ import annotations

from typing import Any

import pytest

from tests.incidents.test_playbook_world import (  # noqa: F401 - the fixture
    PLAYBOOK_STEP,
    World,
    at,
    cli,
    step,
    world,
)

pytestmark = [pytest.mark.prefect]


def _trail(w: World, result: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(step, evidence kind, subject status) of every record the run's steps list, in order."""
    out = []
    for s in result["run"]["steps"]:
        for evidence_id in s["evidence_ids"]:
            record = w.store.get_evidence(evidence_id)
            out.append((s["name"], record.kind, record.subject.status))
    return out


def test_unauthorized_release_as_flow_runs(prefect_server: None, world: World,  # noqa: F811
                                           capsys: pytest.CaptureFixture[str]) -> None:
    w = world
    good = w.package("1.2.3")
    rogue = w.package("1.4.0", builder_id="https://ci.evil.example/builder")
    runs: dict[str, dict[str, Any]] = {}
    for n, channel in enumerate(("stable", "beta")):
        w.promote(good, channel=channel, ring="enterprise" if channel == "stable" else "platform-pilot",
                  hours=0.1 + n * 0.2)
        w.ingest(w.fleet(good, "1.2.3") + w.fleet(rogue, "1.4.0", prefix="bad")[:1], channel=channel,
                 hours=0.6 + n / 10)
    for channel, flags in (("stable", ["--prefect"]), ("beta", [])):
        base = ["playbook", "unauthorized-release", "--channel", channel, "--trust-root", str(w.keys.trust_root),
                "--package", str(rogue), "--json", *flags]
        code, first, err = cli(capsys, *base, "--at", at(1).isoformat())
        assert code == 0, err
        assert first["status"] == "awaiting-approval" and first["awaiting"]["step"] == "hold-channel"
        approval = first["awaiting"]["approval_id"]
        w.approve(approval, hours=1.2)
        code, done, err = cli(capsys, *base, "--approval", approval, "--at", at(1.3).isoformat())
        assert code == 0, err
        assert done["status"] == "completed" and w.channel(channel).hold is not None
        runs[channel] = done

    flow_trail, local_trail = _trail(w, runs["stable"]), _trail(w, runs["beta"])
    assert flow_trail == local_trail
    assert ("hold-channel", "approval-consumption", "consumed") in flow_trail
    flow_runs = runs["stable"]["run"]["flow_run_ids"]
    assert len(flow_runs) == 2 and runs["beta"]["run"]["flow_run_ids"] == []
    for s in runs["stable"]["run"]["steps"]:
        for evidence_id in s["evidence_ids"]:
            assert w.store.get_evidence(evidence_id).flow_run_id in flow_runs
