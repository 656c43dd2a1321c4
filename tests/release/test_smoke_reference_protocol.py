"""`smoke-installers` with the reference system's protocol (cavra-spec §4.4): the binary gets the
reference's policy request on stdin and must answer JSON whose ``decision`` is one the reference
knows. Default under ``--profile reference``, selectable with ``--probe reference-json`` under the
ringward profile. Each failure class of the reference (execution failed with exc/stderr/rc, timed
out, output not valid JSON, invalid decision) is a one-line error; Ringward's safety stays (a copy
of the verified bytes in a throw-away directory, a timeout that kills the probe's whole process
group, a scrubbed environment).

Every binary here is a real small executable: shell scripts in reference packages written by the
independent generator (``payload`` runs before its default answer), a Python script in a Ringward
package.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import InputError
from ringward.core.release.profiles import REFERENCE_SMOKE_DECISIONS, REFERENCE_SMOKE_REQUEST
from ringward.core.trust.root import TrustRoot
from ringward.operations.release.package import package_release
from ringward.operations.release.smoke import SmokeResult, current_target, smoke_installers
from tests.release.reference_packages import ReferenceGenerator
from tests.release.simulator import NOW, ReleaseSimulator, trusted

VERSION = "1.2.5"
TARGET = "linux/amd64"  # the generator's shell scripts run on any POSIX host
BINARY = f"cavra-runtime_{VERSION}_linux_amd64"
AT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
EXPECTED = "expected one of allow, block, require_approval, warn, audit_only, allow_with_attestation"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="shell-script binaries")


@pytest.fixture
def gen(tmp_path: Path) -> ReferenceGenerator:
    return ReferenceGenerator(tmp_path / "ref")


@pytest.fixture
def root(gen: ReferenceGenerator) -> TrustRoot:
    return TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra-release"),))


def reference_smoke(gen: ReferenceGenerator, root: TrustRoot, script: str, **kwargs: Any) -> SmokeResult:
    """A signed reference package whose linux/amd64 runtime runs ``script`` (then the generator's
    correct answer, unless the script exits first), smoke-tested under the reference profile."""
    pkg = gen.package(VERSION, out=f"p{len(list(gen.root.glob('*')))}", payload=script.encode())
    return smoke_installers(pkg, root, now=NOW, profile="reference", target=TARGET, **kwargs)


def only_error(result: SmokeResult) -> str:
    assert not result.valid
    assert result.package.valid, result.package.errors  # the package verified; the probe failed
    (error,) = result.smoke.errors
    assert error.code == "smoke-failed"
    assert "\n" not in error.message
    return error.message


# --- the reference profile: its protocol by default ------------------------------------------------


def test_correct_answer_passes_and_reports_the_decision(gen: ReferenceGenerator, root: TrustRoot) -> None:
    result = reference_smoke(gen, root, "")
    assert result.valid, result.errors
    (execution,) = result.executions
    assert execution.probe == "reference-json" and execution.decision == "allow"
    assert execution.returncode == 0 and not execution.timed_out
    assert execution.command == ["cavra-runtime"]  # no arguments: the request is on stdin
    assert json.loads(execution.stdin or "") == REFERENCE_SMOKE_REQUEST
    document = result.to_dict()
    assert document["probe"] == "reference-json" and document["executions"][0]["decision"] == "allow"


def test_the_binary_receives_exactly_the_reference_request(gen: ReferenceGenerator, root: TrustRoot) -> None:
    request = ('{"session_id":"installer-smoke","action_type":"git_operation","operation":"status",'
               '"target":"feature/installer-smoke"}')
    script = f"""request=$(cat)
if [ "$request" = '{request}' ]
then echo '{{"decision": "audit_only", "reason": "status is read-only"}}'; exit 0
fi
echo "unexpected request: $request" >&2; exit 9
"""
    result = reference_smoke(gen, root, script)
    assert result.valid, result.errors
    assert result.executions[0].decision == "audit_only"


@pytest.mark.parametrize("decision", ["block", "require_approval", "allow_with_attestation"])
def test_every_reference_decision_is_an_answer(gen: ReferenceGenerator, root: TrustRoot, decision: str) -> None:
    assert decision in REFERENCE_SMOKE_DECISIONS
    result = reference_smoke(gen, root, f"cat >/dev/null\necho '{{\"decision\": \"{decision}\"}}'\nexit 0\n")
    assert result.valid, result.errors
    assert result.executions[0].decision == decision


@pytest.mark.parametrize(("script", "detail"), [
    ("cat >/dev/null\necho 'decision: allow'\nexit 0\n", "Expecting value: line 1 column 1 (char 0)"),
    ("cat >/dev/null\nexit 0\n", "empty output"),
    ("cat >/dev/null\necho '{\"decision\": \"allow\"} trailing'\nexit 0\n", "Extra data"),
    ("cat >/dev/null\necho '{\"decision\": \"block\", \"decision\": \"allow\"}'\nexit 0\n",
     "duplicate key 'decision'"),
])
def test_output_that_is_not_valid_json(gen: ReferenceGenerator, root: TrustRoot, script: str, detail: str) -> None:
    message = only_error(reference_smoke(gen, root, script))
    assert message.startswith(f"installer smoke output is not valid JSON for {BINARY}: ")
    assert detail in message


@pytest.mark.parametrize(("answer", "detail"), [
    ('{"decision": "maybe"}', f"'maybe' ({EXPECTED})"),
    ('{"decision": "ALLOW"}', f"'ALLOW' ({EXPECTED})"),
    ('{"decision": null}', f"None ({EXPECTED})"),
    ('{"verdict": "allow"}', f"no decision field ({EXPECTED})"),
    ('["allow"]', f"the answer is a JSON array, not an object with a decision ({EXPECTED})"),
    ('"allow"', f"the answer is a JSON string, not an object with a decision ({EXPECTED})"),
])
def test_an_invalid_decision(gen: ReferenceGenerator, root: TrustRoot, answer: str, detail: str) -> None:
    message = only_error(reference_smoke(gen, root, f"cat >/dev/null\necho '{answer}'\nexit 0\n"))
    assert message == f"installer smoke output has an invalid decision for {BINARY}: {detail}"


def test_a_non_zero_exit_fails_with_the_last_stderr_line(gen: ReferenceGenerator, root: TrustRoot) -> None:
    script = ("cat >/dev/null\necho '{\"decision\": \"allow\"}'\necho 'starting' >&2\n"
              "echo 'policy bundle unreadable' >&2\nexit 3\n")
    message = only_error(reference_smoke(gen, root, script))
    assert message == f"installer smoke execution failed for {BINARY}: exit code 3 (policy bundle unreadable)"


def test_a_binary_that_cannot_be_executed_fails_with_the_exception(gen: ReferenceGenerator, root: TrustRoot) -> None:
    # the generator's scripts start with #!/bin/sh; a payload cannot change that, so a Ringward-built
    # package carries an interpreter line that does not exist
    sim = ReleaseSimulator(gen.root / "sim")
    host = _host_file_target()
    dist = sim.dist("1.2.3", name="dist-noexec", targets=(host,))
    (dist / f"rt_1.2.3_{host}").write_bytes(b"#!/nonexistent/interpreter\n")
    pkg = package_release(dist, sim.root / "noexec", sim.info("1.2.3"), sim.key).package_dir
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, probe="reference-json")
    message = only_error(result)
    assert message.startswith(f"installer smoke execution failed for rt_1.2.3_{host}: could not execute: ")
    assert "No such file or directory" in message


def test_a_hanging_binary_times_out_and_nothing_is_left_running(gen: ReferenceGenerator, root: TrustRoot) -> None:
    # the runtime starts a child that would outlive it, reports the child's pid, then hangs
    script = "sleep 30 &\necho \"child $!\" >&2\nwait\n"
    started = time.monotonic()
    result = reference_smoke(gen, root, script, timeout_seconds=0.5)
    assert time.monotonic() - started < 20
    message = only_error(result)
    assert message.startswith(f"installer smoke execution timed out for {BINARY} (after ")
    (execution,) = result.executions
    assert execution.timed_out and execution.returncode is None and execution.decision is None
    child = int(execution.stderr.split()[1])
    assert _gone(child), "the probe's child survived the timeout"


def test_an_oversized_answer_is_not_judged(gen: ReferenceGenerator, root: TrustRoot) -> None:
    script = "cat >/dev/null\nprintf '{\"decision\": \"allow\", \"pad\": \"'\nhead -c 70000 /dev/zero | tr '\\0' a\n" \
             "echo '\"}'\nexit 0\n"
    message = only_error(reference_smoke(gen, root, script))
    assert message == f"installer smoke output is not valid JSON for {BINARY}: output longer than 65536 bytes"


def test_the_version_probe_can_still_be_chosen(gen: ReferenceGenerator, root: TrustRoot) -> None:
    pkg = gen.package(VERSION)
    result = smoke_installers(pkg, root, now=NOW, profile="reference", target=TARGET, probe="version")
    assert result.valid, result.errors
    (execution,) = result.executions
    assert execution.probe == "version" and execution.stdin is None and execution.decision is None
    assert f"cavra-runtime version {VERSION}" in execution.stdout


def test_auto_detects_the_reference_and_uses_its_probe(gen: ReferenceGenerator, root: TrustRoot) -> None:
    pkg = gen.package(VERSION)
    result = smoke_installers(pkg, root, now=NOW, profile="auto", target=TARGET)
    assert result.valid, result.errors
    assert result.package.profile_name == "reference" and result.probe == "reference-json"


def test_version_probe_options_with_the_reference_probe_are_bad_input(gen: ReferenceGenerator, root: TrustRoot) -> None:
    pkg = gen.package(VERSION)
    with pytest.raises(InputError, match=r"^--probe-arg applies to the version probe only; this run uses the "
                                         r"reference-json probe \(the reference profile's probe\)"):
        smoke_installers(pkg, root, now=NOW, profile="reference", target=TARGET, probe_args=("--help",))
    with pytest.raises(InputError, match=r"^--no-expect-version applies to the version probe only.*"
                                         r"\(--probe reference-json\)"):
        smoke_installers(pkg, root, now=NOW, target=TARGET, probe="reference-json", expect_version=False)
    with pytest.raises(InputError, match=r"\(the reference profile's probe\); add --probe version"):
        smoke_installers(pkg, root, now=NOW, profile="auto", target=TARGET, probe_args=("--help",))
    with pytest.raises(InputError, match=r"^--probe: expected one of version, reference-json, found 'json'$"):
        smoke_installers(pkg, root, now=NOW, target=TARGET, probe="json")


# --- the ringward profile: the version probe by default, the reference protocol on request ---------


def _host_file_target() -> str:
    os_name, arch = current_target().split("/")
    return f"{os_name}_{arch}" + (".exe" if os_name == "windows" else "")


PYTHON_RUNTIME = f"""#!{sys.executable}
import json, os, sys
request = json.load(sys.stdin)
print(json.dumps({{"decision": "warn", "request": request, "cwd": os.getcwd(), "env": sorted(os.environ),
                  "argv": sys.argv[1:]}}))
"""


@pytest.fixture
def python_pkg(tmp_path: Path) -> tuple[ReleaseSimulator, Path]:
    """A Ringward package whose host binary is a Python script speaking the reference protocol."""
    sim = ReleaseSimulator(tmp_path / "sim")
    host = _host_file_target()
    dist = sim.dist("1.2.3", name="dist-py", targets=(host, "windows_amd64.exe"))
    (dist / f"rt_1.2.3_{host}").write_text(PYTHON_RUNTIME)
    return sim, package_release(dist, sim.root / "py", sim.info("1.2.3"), sim.key).package_dir


def test_ringward_package_with_the_reference_probe(python_pkg: tuple[ReleaseSimulator, Path]) -> None:
    sim, pkg = python_pkg
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, probe="reference-json")
    assert result.valid, result.errors
    (execution,) = result.executions
    assert execution.decision == "warn" and execution.command == ["rt"]
    answer = json.loads(execution.stdout)
    assert answer["request"] == REFERENCE_SMOKE_REQUEST and answer["argv"] == []
    # a copy in a throw-away directory, a scrubbed environment
    assert Path(answer["cwd"]).name.startswith("ringward-smoke-") and not Path(answer["cwd"]).exists()
    assert set(answer["env"]) <= {"PATH", "HOME", "LANG", "TMPDIR", "LC_CTYPE", "PWD"}
    assert str(pkg) not in answer["cwd"]


def test_ringward_profile_keeps_the_version_probe_by_default(python_pkg: tuple[ReleaseSimulator, Path]) -> None:
    sim, pkg = python_pkg
    result = smoke_installers(pkg, sim.trust_root(), now=NOW)
    # the script reads JSON from stdin; the version probe gives it none (stdin is /dev/null)
    assert not result.valid and result.probe == "version"
    assert result.smoke.errors[0].message.startswith("installer smoke execution failed for rt_1.2.3_")


def test_a_version_only_binary_fails_the_reference_probe(tmp_path: Path) -> None:
    sim = ReleaseSimulator(tmp_path / "sim")
    pkg = sim.package("1.2.3", out="host", targets=(_host_file_target(),))
    assert smoke_installers(pkg, sim.trust_root(), now=NOW).valid
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, probe="reference-json")
    assert only_error(result) == (f"installer smoke output is not valid JSON for rt_1.2.3_{_host_file_target()}: "
                                  "Expecting value: line 1 column 1 (char 0)")


# --- the CLI ------------------------------------------------------------------------------------


def ringward(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from ringward.cli.main import run

    with pytest.raises(SystemExit) as exited:
        run(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exited.value.code or 0), out.out, out.err


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gen: ReferenceGenerator, root: TrustRoot) -> list[str]:
    if current_target() != TARGET:
        pytest.skip("the CLI probes this machine's target")
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    trust = tmp_path / "trust.json"
    trust.write_text(root.model_dump_json())
    return ["--trust-root", str(trust), "--at", AT]


def test_cli_reference_protocol(gen: ReferenceGenerator, cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    pkg = str(gen.package(VERSION))
    code, out, err = ringward(capsys, "release", "smoke-installers", pkg, *cli, "--profile", "reference",
                              "--no-evidence")
    assert code == 0, err
    assert "ran cavra-runtime with the reference request on stdin [linux/amd64]: exit 0: decision allow" in out
    assert out.strip().endswith(f"VALID: installer smoke {pkg}")
    code, out, err = ringward(capsys, "release", "smoke-installers", pkg, *cli, "--profile", "reference",
                              "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["probe"] == "reference-json" and result["executions"][0]["decision"] == "allow"
    assert result["evidence"]["evidence_id"]
    code, out, err = ringward(capsys, "release", "smoke-installers", pkg, *cli, "--profile", "reference",
                              "--probe", "version", "--no-evidence")
    assert code == 0 and f"ran cavra-runtime --version [linux/amd64]: exit 0: cavra-runtime version {VERSION}" in out


def test_cli_failure_is_exit_1_and_one_line(gen: ReferenceGenerator, cli: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pkg = str(gen.package(VERSION, payload=b"cat >/dev/null\necho '{\"decision\": \"deny\"}'\nexit 0\n"))
    code, out, err = ringward(capsys, "release", "smoke-installers", pkg, *cli, "--profile", "reference",
                              "--no-evidence")
    assert code == 1 and f"INVALID: installer smoke {pkg}" in out
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert errors == [f"error [smoke-failed] installer smoke output has an invalid decision for {BINARY}: "
                      f"'deny' ({EXPECTED})"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--probe", "json"], "error: --probe: expected one of version, reference-json, found 'json'"),
    (["--profile", "reference", "--probe-arg", "--help"],
     "error: --probe-arg applies to the version probe only; this run uses the reference-json probe (the reference "
     "profile's probe); add --probe version to probe with arguments"),
    (["--probe", "reference-json", "--no-expect-version"],
     "error: --no-expect-version applies to the version probe only; this run uses the reference-json probe "
     "(--probe reference-json); add --probe version to probe with arguments"),
])
def test_cli_bad_probe_options_are_exit_2(gen: ReferenceGenerator, cli: list[str], capsys: pytest.CaptureFixture[str],
                                          extra: list[str], message: str) -> None:
    pkg = str(gen.package(VERSION))
    code, _, err = ringward(capsys, "release", "smoke-installers", pkg, *cli, *extra, "--no-evidence")
    assert code == 2 and err.strip() == message


def _gone(pid: int, wait: float = 5.0) -> bool:
    """The process no longer runs (gone, or a zombie waiting for a reaper)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            state = "?"
        if state in {"Z", "X"}:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.prefect
def test_smoke_flow_uses_the_reference_probe(prefect_server: None, ringward_home: Path, gen: ReferenceGenerator,
                                             root: TrustRoot, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`--prefect` runs the same probe through the smoke-installers flow (the profile's by default,
    --probe on request), and a failing probe is a failed result there too."""
    if current_target() != TARGET:
        pytest.skip("the flow probes this machine's target")
    trust = tmp_path / "trust.json"
    trust.write_text(root.model_dump_json())
    pkg = str(gen.package(VERSION))
    common = ["--trust-root", str(trust), "--at", AT, "--prefect", "--json"]
    code, out, err = ringward(capsys, "release", "smoke-installers", pkg, *common, "--profile", "reference")
    assert code == 0, (out, err)
    result = json.loads(out)
    assert result["probe"] == "reference-json" and result["executions"][0]["decision"] == "allow"
    from ringward.store import open_store

    with open_store() as store:  # it ran as a flow run: the evidence names it
        assert store.get_evidence(int(result["evidence"]["evidence_id"])).flow_run_id
    bad = str(gen.package(VERSION, out="bad", payload=b"cat >/dev/null\necho '{\"decision\": 1}'\nexit 0\n"))
    code, out, _ = ringward(capsys, "release", "smoke-installers", bad, *common, "--profile", "auto",
                            "--no-evidence")
    assert code == 1
    assert json.loads(out)["errors"][0]["message"].startswith("installer smoke output has an invalid decision")


def test_the_shipped_rehearsal_generator_writes_runtimes_that_answer_the_protocol(tmp_path: Path) -> None:
    """`ringward.operations.migration.reference_package` (the demo's step 9, migration rehearsals)
    writes reference packages whose runtimes pass the reference smoke test, as the reference's own do."""
    from ringward.operations.migration.reference_package import ReferenceGenerator as ShippedGenerator

    shipped = ShippedGenerator(tmp_path / "shipped")
    package = shipped.package("v1.2.5", created=NOW)
    trust = TrustRoot(updated_at=NOW, keys=(trusted(shipped.key, "cavra-release"),))
    result = smoke_installers(package, trust, now=NOW, profile="reference", target=TARGET)
    assert result.valid, result.errors
    (execution,) = result.executions
    assert execution.probe == "reference-json" and execution.decision == "allow"
    version = smoke_installers(package, trust, now=NOW, profile="reference", target=TARGET, probe="version")
    assert version.valid, version.errors
