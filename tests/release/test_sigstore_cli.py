"""``ringward release verify-package --sigstore-*``: exit codes, one-line errors, --json, and the
layer staying out of the way (and out of the import graph) when it is not asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ringward.cli.main import run
from ringward.operations.trust.keys import save_trust_root
from tests.release.sigstore_fixture import (
    GITHUB_ISSUER,
    IDENTITY,
    SigstoreInstance,
    bundle_name,
    package_binaries,
    write_bundles,
)
from tests.release.simulator import ReleaseSimulator

ROOT = Path(__file__).resolve().parents[2]
LINUX = "bin/rt_1.2.3_linux_amd64"
AT = "2026-11-22T12:00:00Z"


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    sim = ReleaseSimulator(tmp_path)
    pkg = sim.package("1.2.3")
    save_trust_root(tmp_path / "trust-root.json", sim.trust_root(), overwrite=False)
    instance = SigstoreInstance()
    (tmp_path / "trusted_root.json").write_bytes(instance.trusted_root_bytes())
    write_bundles(pkg, instance.attest(package_binaries(pkg)))
    return {"pkg": pkg, "trust": tmp_path / "trust-root.json", "sigstore": tmp_path / "trusted_root.json"}


def _invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run(argv)
    code = exited.value.code
    captured = capsys.readouterr()
    return (code if isinstance(code, int) else (0 if code is None else 1)), captured.out, captured.err


def _argv(setup: dict[str, Path], *extra: str, layer: bool = True) -> list[str]:
    argv = ["release", "verify-package", str(setup["pkg"]), "--trust-root", str(setup["trust"]), "--at", AT,
            "--no-evidence"]
    if layer:
        argv += ["--sigstore-trusted-root", str(setup["sigstore"]), "--sigstore-identity", IDENTITY,
                 "--sigstore-issuer", GITHUB_ISSUER]
    return argv + list(extra)


def test_valid_package_with_attestations(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _invoke(_argv(setup), capsys)
    assert code == 0, err
    assert "PASS  keyless-attestation (4 checked)" in out and "VALID:" in out


def test_json_carries_the_keyless_section(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _invoke(_argv(setup, "--json", "--require-sigstore"), capsys)
    result: dict[str, Any] = json.loads(out)
    assert code == 0 and result["valid"]
    report = result["keyless_attestation"]
    assert report["required"] and report["counts"] == {"verified": 4}
    assert {a["log_index"] for a in report["attestations"]} and all(
        a["identity"] == IDENTITY and a["issuer"] == GITHUB_ISSUER for a in report["attestations"])


def test_wrong_identity_exits_1_with_one_line_per_binary(setup: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = _argv(setup)
    argv[argv.index("--sigstore-identity") + 1] = "someone@evil.example"
    code, out, err = _invoke(argv, capsys)
    assert code == 1 and "FAIL  keyless-attestation" in out and "INVALID:" in out
    errors = [line for line in err.splitlines() if line.startswith("error [")]
    assert len(errors) == 4 and all("attestation-identity-mismatch" in line for line in errors), err
    assert "Traceback" not in err


def test_missing_bundle_warns_then_fails_when_required(setup: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (setup["pkg"] / bundle_name(LINUX)).unlink()
    code, out, err = _invoke(_argv(setup), capsys)
    assert code == 0 and "PASS  keyless-attestation (3 checked)" in out
    assert f"warning: {LINUX}: keyless attestation missing" in err
    code, _, err = _invoke(_argv(setup, "--require-sigstore"), capsys)
    assert code == 1 and f"error [attestation-missing] {LINUX}" in err


def test_malformed_bundle_exits_1_in_one_line(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (setup["pkg"] / bundle_name(LINUX)).write_bytes(b'{"mediaType": 1, "mediaType": 2}')
    code, _, err = _invoke(_argv(setup), capsys)
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 1 and len(errors) == 1 and "attestation-malformed" in errors[0] and "duplicate key" in errors[0]


@pytest.mark.parametrize("options", [
    ["--sigstore-identity", IDENTITY],
    ["--sigstore-issuer", GITHUB_ISSUER],
    ["--sigstore-identity", IDENTITY, "--sigstore-issuer", GITHUB_ISSUER],
    ["--sigstore-trusted-root", "{sigstore}"],
    ["--sigstore-trusted-root", "{sigstore}", "--sigstore-identity", IDENTITY],
    ["--require-sigstore"],
    ["--sigstore-trusted-root", "{sigstore}", "--sigstore-identity", IDENTITY, "--sigstore-issuer", "not-a-url"],
])
def test_partial_options_exit_2_in_one_line(setup: dict[str, Path], options: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = _argv(setup, layer=False) + [o.format(sigstore=setup["sigstore"]) for o in options]
    code, out, err = _invoke(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "--sigstore" in lines[0] or "--require-sigstore" in lines[0]
    assert out == ""  # refused before anything was verified


def test_partial_options_with_prefect_exit_2_before_any_flow(setup: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _invoke([*_argv(setup, layer=False), "--sigstore-identity", IDENTITY, "--prefect"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "required with --sigstore-identity" in err


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "symlink-loop", "not-json", "other-json"])
def test_unusable_sigstore_trusted_root_exits_2(setup: dict[str, Path], tmp_path: Path, case: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    subject = tmp_path / "subject.json"
    if case == "directory":
        subject.mkdir()
    elif case == "empty":
        subject.write_bytes(b"")
    elif case == "symlink-loop":
        subject.symlink_to(subject)
    elif case == "not-json":
        subject.write_text("mediaType: yaml\n")
    elif case == "other-json":
        subject.write_bytes(setup["trust"].read_bytes())  # a Ringward trust root is not a Sigstore one
    setup["sigstore"] = subject
    code, _, err = _invoke(_argv(setup), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert str(subject) in lines[0] and "Traceback" not in err
    if case == "symlink-loop":
        assert "symbolic link" in lines[0]


def test_plain_verify_package_never_imports_sigstore(setup: dict[str, Path]) -> None:
    """Without the options nothing changes, down to the import graph (verify-package stays fast)."""
    script = (
        "import sys\n"
        "from ringward.cli.main import run\n"
        "try:\n"
        f"    run({_argv(setup, layer=False)!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('EXIT', code, 'sigstore' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                          cwd=ROOT)
    # the unlisted bundles fail as unlisted files, exactly as before the layer existed
    assert done.stdout.strip().splitlines()[-1] == "EXIT 1 False", done.stdout + done.stderr
    assert "unlisted-file" in done.stderr


def test_core_never_imports_sigstore() -> None:
    for path in (ROOT / "ringward" / "core").rglob("*.py"):
        text = path.read_text()
        assert "import sigstore" not in text and "from sigstore" not in text, path
