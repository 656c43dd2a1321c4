"""`ringward window ...` as a user runs it: exit codes 0/1/2, one-line errors, ``--json`` shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringward.cli.main import run
from ringward.core.promotion import windows_policy as wp

NY = "America/New_York"
POLICY = f"""
schema_version: {wp.SCHEMA_VERSION}
default: allow
allow:
  - name: prod-weekdays
    targets: [ring:production]
    timezone: {NY}
    start: "2026-01-05T09:00"
    duration: 8h
    rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
freezes:
  - name: year-end
    targets: ["*"]
    reason: Year-end change freeze
    start_at: "2026-12-18T17:00:00-05:00"
    end_at: "2027-01-04T09:00:00-05:00"
    timezone: {NY}
  - name: stable-freeze
    targets: [channel:stable]
    reason: quarter close
    start_at: "2026-03-25T00:00:00-04:00"
    end_at: "2026-04-01T00:00:00-04:00"
"""


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RINGWARD_WINDOWS", raising=False)
    path = tmp_path / "windows.yaml"
    path.write_text(POLICY)
    return path


def ringward(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        run(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(done.value.code or 0), out, err


def check(capsys: pytest.CaptureFixture[str], policy: Path, *args: str) -> tuple[int, str, str]:
    return ringward(capsys, "window", "check", "--policy", str(policy), *args)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_open_exits_0(capsys: pytest.CaptureFixture[str], policy_file: Path) -> None:
    code, out, _ = check(capsys, policy_file, "--target", "ring:production", "--at", "2026-03-09T15:00:00Z")
    assert code == 0
    assert out.startswith("OPEN: ring:production is inside allow window 'prod-weekdays'")
    assert "open until 2026-03-09T21:00:00Z (2026-03-09T17:00:00-04:00 America/New_York)" in out


def test_closed_exits_1_with_next_opening_in_utc_and_local(capsys: pytest.CaptureFixture[str],
                                                           policy_file: Path) -> None:
    code, out, _ = check(capsys, policy_file, "-t", "ring:production", "--at", "2026-03-07T12:00:00-05:00")
    assert code == 1
    assert out.startswith("CLOSED: ring:production is outside every allow window ('prod-weekdays')")
    assert "next opening 2026-03-09T13:00:00Z (2026-03-09T09:00:00-04:00 America/New_York)" in out


def test_freeze_over_allow_window_exits_1(capsys: pytest.CaptureFixture[str], policy_file: Path) -> None:
    code, out, _ = check(capsys, policy_file, "-t", "ring:production", "--at", "2026-12-21T10:00:00-05:00")
    assert code == 1
    assert "ring:production is frozen by 'year-end' (Year-end change freeze)" in out
    assert "next opening 2027-01-04T14:00:00Z (2027-01-04T09:00:00-05:00 America/New_York)" in out


def test_json_shape(capsys: pytest.CaptureFixture[str], policy_file: Path) -> None:
    code, out, _ = check(capsys, policy_file, "-t", "ring:production", "-t", "channel:stable",
                         "--at", "2026-03-26T15:00:00Z", "--json")
    assert code == 1
    doc = json.loads(out)
    assert {
        "schema_version", "allowed", "at", "reason", "target", "denied_targets", "windows", "freezes",
        "next_opening", "next_opening_local", "next_opening_zone", "open_until", "default", "policy",
        "policy_configured", "horizon_days", "targets",
    } <= set(doc)
    assert doc["schema_version"] == "ringward.promotion-window-decision.v1"
    assert doc["allowed"] is False and doc["target"] == "channel:stable"
    assert doc["denied_targets"] == ["channel:stable"] and doc["freezes"] == ["stable-freeze"]
    assert doc["at"] == "2026-03-26T15:00:00Z"
    assert doc["next_opening"] == "2026-04-01T13:00:00Z"
    assert doc["next_opening_local"] == "2026-04-01T09:00:00-04:00" and doc["next_opening_zone"] == NY
    states = {t["target"]: t["state"] for t in doc["targets"]}
    assert states == {"ring:production": "open", "channel:stable": "frozen"}
    code, out, _ = check(capsys, policy_file, "-t", "ring:production", "--at", "2026-03-26T15:00:00Z", "--json")
    assert code == 0 and json.loads(out)["allowed"] is True and json.loads(out)["next_opening"] is None


def test_policy_from_environment(capsys: pytest.CaptureFixture[str], policy_file: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWARD_WINDOWS", str(policy_file))
    code, out, _ = ringward(capsys, "window", "check", "-t", "ring:production", "--at", "2026-12-25T00:00:00Z")
    assert code == 1 and "year-end" in out
    monkeypatch.delenv("RINGWARD_WINDOWS")
    code, _, err = ringward(capsys, "window", "check", "-t", "ring:production")
    assert code == 2 and error_lines(err) == ["error: --policy: required (or set RINGWARD_WINDOWS)"]


def bad_policy(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(f"schema_version: {wp.SCHEMA_VERSION}\nallow:\n  - name: w\n    targets: [ring:production]\n"
                    + entry)
    return path


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("    timezone: Mars/Base\n    start: '2026-01-05T09:00'\n    duration: 8h\n    rrule: FREQ=DAILY\n",
         "allow[0].timezone: unknown IANA time zone 'Mars/Base'"),
        (f"    timezone: {NY}\n    start: '2026-01-05T09:00'\n    duration: 8h\n    rrule: FREQ=DAILY;BYDAY=XX\n",
         "allow[0].rrule: BYDAY=XX: 'XX' is not a weekday"),
        (f"    timezone: {NY}\n    start: '2026-01-05T09:00'\n    duration: 8h\n    rrule: FREQ=SECONDLY\n",
         "allow[0].rrule: FREQ=SECONDLY is not supported"),
        (f"    timezone: {NY}\n    start: '2026-01-05T09:00'\n    duration: 8h\n    rrule: 'FREQ=DAILY;COUNT=99999'\n",
         "allow[0].rrule: COUNT=99999 is not supported"),
        (f"    timezone: {NY}\n    start: '2026-01-05T09:00-05:00'\n    duration: 8h\n    rrule: FREQ=DAILY\n",
         "allow[0].start: expected a local date and time"),
    ],
)
def test_bad_policy_exits_2_with_one_line_naming_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                           entry: str, fragment: str) -> None:
    path = bad_policy(tmp_path, entry)
    code, out, err = check(capsys, path, "-t", "ring:production", "--at", "2026-03-09T15:00:00Z")
    assert code == 2 and out == ""
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: 1 problem: ") and fragment in lines[0]


def test_every_problem_gets_its_own_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = bad_policy(tmp_path, "    timezone: Mars/Base\n    start: '2026-01-05T09:00'\n    duration: soon\n"
                                "    rrule: FREQ=MINUTELY\n")
    code, _, err = check(capsys, path, "-t", "ring:production", "--at", "2026-03-09T15:00:00Z")
    assert code == 2
    lines = error_lines(err)
    assert any("allow[0].timezone: unknown IANA time zone" in line for line in lines)
    assert any("allow[0].duration: expected a duration" in line for line in lines)
    assert any("allow[0].rrule: FREQ=MINUTELY is not supported" in line for line in lines)
    assert all(line.startswith(f"error: {path}: allow[0].") for line in lines)
    code, out, err = ringward(capsys, "window", "validate", "--policy", str(path), "--json")
    assert code == 2 and json.loads(out)["valid"] is False and len(json.loads(out)["problems"]) == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--at", "2026-03-09T15:00:00"], "error: --at: '2026-03-09T15:00:00' has no UTC offset"),
        (["--at", "next tuesday"], "error: --at: expected an ISO 8601 time"),
        (["--horizon", "forever"], "error: --horizon: expected a duration"),
    ],
)
def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str], policy_file: Path, args: list[str],
                            fragment: str) -> None:
    code, out, err = check(capsys, policy_file, "-t", "ring:production", *args)
    assert code == 2 and out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(fragment), err


@pytest.mark.parametrize("text", ["allow: [unclosed\n", "schema_version: other.v1\n"])
def test_bad_yaml_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    code, _, err = check(capsys, path, "-t", "ring:production", "--at", "2026-03-09T15:00:00Z")
    assert code == 2 and len(error_lines(err)) == 1


def test_missing_file_and_bad_target_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            policy_file: Path) -> None:
    code, _, err = check(capsys, tmp_path / "nope.yaml", "-t", "ring:production")
    assert code == 2 and "file not found" in err
    code, _, err = check(capsys, policy_file, "-t", "production", "--at", "2026-03-09T15:00:00Z")
    assert code == 2 and "--target: expected ring:<name>" in err


def test_validate_and_break_glass(capsys: pytest.CaptureFixture[str], policy_file: Path) -> None:
    code, out, _ = ringward(capsys, "window", "validate", "--policy", str(policy_file))
    assert code == 0 and "VALID: 1 allow window(s), 2 freeze(s), default allow" in out
    code, out, _ = ringward(capsys, "window", "break-glass", "-t", "ring:production", "-t", "environment:prod",
                            "--subject", "rpr_0123abcd", "--json")
    assert code == 0
    expected = wp.break_glass_binding(["ring:production", "environment:prod"], subject="rpr_0123abcd")
    assert json.loads(out) == {"action": "break_glass", "subject_digest": expected.subject_digest,
                               "target": "rollout:rpr_0123abcd"}


def test_record_appends_evidence(capsys: pytest.CaptureFixture[str], policy_file: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RINGWARD_DATABASE_URL", raising=False)
    code, _, _ = check(capsys, policy_file, "-t", "ring:production", "--at", "2026-12-25T00:00:00Z", "--record",
                       "--actor", "release-manager")
    assert code == 1
    code, out, _ = ringward(capsys, "evidence", "search", "--metadata-kind", wp.KIND_WINDOW_DECISION, "--json")
    assert code == 0 and "release-manager" in out and "year-end" in out


def test_entry_point_subprocess(policy_file: Path) -> None:
    env = {**os.environ, "RINGWARD_WINDOWS": str(policy_file)}
    done = subprocess.run([sys.executable, "-m", "ringward", "window", "check", "-t", "ring:production",
                           "--at", "2026-12-25T00:00:00Z"], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "CLOSED" in done.stdout
