"""A failed check family is a failed task: the UI shows the failing family's task red (Failed), not
only the flow run, and the flow still returns the whole result (the CLI's `--prefect` path reads it,
with the same exit codes)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from flows._common import run_flow
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.trust.keys import save_trust_root
from tests.release.simulator import NOW, ReleaseSimulator

pytestmark = pytest.mark.prefect


def _task_states(flow_run_id: str, expect: tuple[str, ...] = ()) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    # task-run states reach the server as events, recorded asynchronously: wait until they settle
    deadline = time.monotonic() + 120
    with PrefectRest(str(PREFECT_API_URL.value())) as client:
        while True:
            # default task run names end in a 3-hex suffix (`validate-upgrade-cc0`); check-<family> names do not
            # a task run whose first state has not been recorded yet has state null: still pending
            states = {re.sub(r"-[0-9a-f]{3}$", "", t["name"]): (t.get("state") or {}).get("type", "PENDING")
                      for t in client.task_runs(flow_run_id)}
            # a task run reaches the server only with its first event: wait for the ones the test reads too
            done = set(states.values()) <= {"COMPLETED", "FAILED", "CRASHED"}
            settled = bool(states) and done and set(expect) <= set(states)
            if settled or time.monotonic() > deadline:
                return states
            time.sleep(0.5)


@pytest.fixture
def sim(tmp_path: Path) -> ReleaseSimulator:
    return ReleaseSimulator(tmp_path)


@pytest.fixture
def trust_file(sim: ReleaseSimulator, tmp_path: Path) -> str:
    path = tmp_path / "trust-root.json"
    save_trust_root(path, sim.trust_root(), overwrite=False)
    return str(path)


def test_failed_integrity_is_a_red_task_and_the_result_is_whole(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, trust_file: str
) -> None:
    from flows.verify_package import verify_package_flow

    package = sim.package("1.2.3")
    sim.flip_bit(package / "bin" / "rt_1.2.3_linux_amd64")
    state = verify_package_flow(package_dir=str(package), trust_root=trust_file, now=NOW, return_state=True)
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    assert not result["valid"]
    families = {f["family"]: f["status"] for f in result["families"]}
    assert families["integrity-and-signatures"] == "failed"
    tasks = _task_states(str(state.state_details.flow_run_id),
                         expect=("integrity-and-signatures", "record-verification-evidence"))
    assert tasks["integrity-and-signatures"] == "FAILED", tasks
    assert tasks["record-verification-evidence"] == "COMPLETED", tasks  # evidence is still recorded
    # the CLI's flow path gets the same whole result (exit 1 comes from `valid`, not from a crash)
    again = run_flow(verify_package_flow, package_dir=str(package), trust_root=trust_file, now=NOW)
    assert {k: v for k, v in again.items() if k != "evidence"} == {k: v for k, v in result.items() if k != "evidence"}


def test_a_valid_package_has_every_task_green(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, trust_file: str
) -> None:
    from flows.verify_package import verify_package_flow

    package = sim.package("1.2.3")
    state = verify_package_flow(package_dir=str(package), trust_root=trust_file, now=NOW, return_state=True)
    assert state.is_completed()
    tasks = _task_states(str(state.state_details.flow_run_id))
    assert tasks and set(tasks.values()) == {"COMPLETED"}, tasks


def test_a_refused_upgrade_is_a_red_task(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, trust_file: str
) -> None:
    from flows.validate_upgrade import validate_upgrade_flow

    newer, older = sim.package("1.2.4", out="new"), sim.package("1.2.3", out="old")
    state = validate_upgrade_flow(previous_dir=str(newer), candidate_dir=str(older), trust_root=trust_file, now=NOW,
                                  return_state=True)
    assert state.is_failed()
    assert not state.result(raise_on_failure=False)["valid"]
    assert _task_states(str(state.state_details.flow_run_id)) == {"validate-upgrade": "FAILED"}


def test_the_trust_root_defaults_from_the_home(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, trust_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.verify_package import verify_package_flow

    package = sim.package("1.2.3")
    monkeypatch.delenv("RINGWARD_TRUST_ROOT", raising=False)
    missing = verify_package_flow(package_dir=str(package), now=NOW, return_state=True)
    assert missing.is_failed()
    assert "trust-root.json" in str(missing.message) or "trust_root: required" in str(missing.message)
    ringward_home.mkdir(parents=True, exist_ok=True)
    (ringward_home / "trust-root.json").write_bytes(Path(trust_file).read_bytes())
    assert run_flow(verify_package_flow, package_dir=str(package), now=NOW)["valid"]
    monkeypatch.setenv("RINGWARD_TRUST_ROOT", trust_file)
    (ringward_home / "trust-root.json").unlink()
    assert run_flow(verify_package_flow, package_dir=str(package), trust_root=None, now=NOW)["valid"]


@pytest.mark.parametrize(("params", "expected"), [
    ('{"package_dir": "/nonexistent", "bogus": 1}', "error: --params: verify-package takes no bogus; expected"),
    ("{}", "error: --params: verify-package needs package_dir"),
    ('{"package_dir": "/nonexistent", "now": "not-a-time"}',
     "error: --params: Flow run received invalid parameters: - now: Input should be a valid datetime"),
])
def test_ringward_run_bad_params_are_one_line(prefect_server: None, ringward_home: Path,
                                              capsys: pytest.CaptureFixture[str], params: str, expected: str) -> None:
    from ringward.cli.main import run

    with pytest.raises(SystemExit) as exited:
        run(["run", "verify-package", "--params", params])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected) and len(err.splitlines()) == 1, err


def test_a_bad_input_inside_a_flow_run_prints_no_traceback(prefect_server: None, ringward_home: Path,
                                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ringward.cli.main import run

    with pytest.raises(SystemExit) as exited:
        run(["release", "verify-package", str(tmp_path / "missing"), "--trust-root", str(tmp_path / "nope.json"),
             "--prefect"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    # the run's final state (it names the error) and the CLI's own error line; nothing else
    assert lines[-1] == f"error: {tmp_path / 'nope.json'}: file not found", lines
    assert len(lines) <= 2 and "Traceback" not in captured.err and "NoneType: None" not in captured.err, lines
