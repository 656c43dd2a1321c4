"""The `ringward` command as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.release.simulator import TARGETS

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def ringward(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run([sys.executable, "-m", "ringward", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=300, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(lines) >= 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    env = {"RINGWARD_HOME": str(root / "home")}
    assert ringward("keys", "generate", "--private-key", str(root / "k.pem"), "--public-key", str(root / "k.pub"),
                    env=env).returncode == 0
    assert ringward("trust", "init", "--output", str(root / "trust.json"), "--key", f"release={root / 'k.pub'}",
                    env=env).returncode == 0
    dist = root / "dist"
    dist.mkdir()
    for target in TARGETS:
        path = dist / f"rt_1.2.3_{target}"
        path.write_text("#!/bin/sh\necho 'rt version 1.2.3'\n")
        path.chmod(0o755)
    done = ringward("release", "package", str(dist), "--version", "1.2.3", "--commit", COMMIT, "--ref",
                    "refs/tags/v1.2.3", "--repository", "acme/rt", "--signing-key", str(root / "k.pem"),
                    "--output", str(root / "out"), "--zip", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return {"root": root, "pkg": root / "out" / "rt-1.2.3", "zip": root / "out" / "rt-1.2.3.zip",
            "trust": root / "trust.json", "key": root / "k.pem", "dist": dist, "home": root / "home"}


def env_of(ws: dict[str, Path]) -> dict[str, str]:
    return {"RINGWARD_HOME": str(ws["home"])}


def test_keys_generate_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    done = ringward("keys", "generate", "--private-key", str(tmp_path / "a.pem"), "--public-key",
                    str(tmp_path / "a.pub"), "--json")
    assert done.returncode == 0
    assert (tmp_path / "a.pem").stat().st_mode & 0o777 == 0o600
    assert json.loads(done.stdout)["key_id"]
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    again = ringward("keys", "generate", "--private-key", str(tmp_path / "a.pem"), "--public-key",
                     str(tmp_path / "b.pub"))
    one_line_error(again, 2, "already exists")
    assert not (tmp_path / "b.pub").exists()


def test_trust_lifecycle(tmp_path: Path, workspace: dict[str, Path]) -> None:
    trust = tmp_path / "trust.json"
    pub = workspace["root"] / "k.pub"
    assert ringward("keys", "generate", "--private-key", str(tmp_path / "b.pem"), "--public-key",
                    str(tmp_path / "b.pub")).returncode == 0
    one_line_error(ringward("trust", "init", "--output", str(trust), "--key", f"release={pub}", "--threshold",
                            "release=2"), 2, "only 1 active release key")
    assert ringward("trust", "init", "--output", str(trust), "--key", f"release={pub}").returncode == 0
    one_line_error(ringward("trust", "init", "--output", str(trust), "--key", f"release={pub}"), 2, "already exists")
    assert ringward("trust", "add-key", "--trust-root", str(trust), "--role", "release", "--role", "advisory",
                    "--public-key", str(tmp_path / "b.pub"), "--label", "second").returncode == 0
    assert ringward("trust", "set-threshold", "release=2", "--trust-root", str(trust)).returncode == 0
    one_line_error(ringward("trust", "set-threshold", "release=3", "--trust-root", str(trust)), 2, "only 2 active")
    revoked = ringward("trust", "revoke-key", "second", "--trust-root", str(trust), "--reason", "lost")
    assert revoked.returncode == 0  # revocation is never refused...
    assert "warning: threshold release=2 but only 1 active release key" in revoked.stderr  # ...but it warns
    assert ringward("trust", "set-threshold", "release=1", "--trust-root", str(trust)).returncode == 0
    shown = json.loads(ringward("trust", "show", "--trust-root", str(trust), "--json").stdout)
    assert [k["status"] for k in shown["keys"]] == ["active", "revoked"]
    assert shown["version"] == 5
    one_line_error(ringward("trust", "add-key", "--trust-root", str(trust), "--role", "release", "--public-key",
                            str(tmp_path / "b.pub")), 2, "revoked")
    one_line_error(ringward("trust", "init", "--output", str(tmp_path / "x.json"), "--key", f"boss={pub}"), 2,
                   "role 'boss'")
    table = ringward("trust", "show", "--trust-root", str(trust)).stdout
    assert "revoked" in table and "thresholds: " in table


def test_malformed_trust_root_is_bad_input(tmp_path: Path, workspace: dict[str, Path]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "ringward.trust-root.v1", "keys": [], "keys": []}')
    one_line_error(ringward("release", "verify-package", str(workspace["pkg"]), "--trust-root", str(bad)), 2,
                   "duplicate key")
    one_line_error(ringward("release", "verify-package", str(workspace["pkg"]), "--trust-root",
                            str(tmp_path / "missing.json")), 2, "missing.json")


def test_verify_valid_package_json_and_exit_zero(workspace: dict[str, Path]) -> None:
    done = ringward("release", "verify-package", str(workspace["pkg"]), "--trust-root", str(workspace["trust"]),
                    "--json", env=env_of(workspace))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["valid"] is True and result["version"] == "1.2.3"
    assert set(result) >= {"schema_version", "package", "errors", "warnings", "families", "signers", "evidence"}
    assert result["evidence"]["evidence_id"]


def test_verify_tampered_package_exits_one(workspace: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    pkg = tmp_path / "rt-1.2.3"
    shutil.copytree(workspace["pkg"], pkg)
    target = pkg / "bin" / "rt_1.2.3_linux_amd64"
    target.write_text(target.read_text().replace("1.2.3", "6.6.6"))
    done = ringward("release", "verify-package", str(pkg), "--trust-root", str(workspace["trust"]), "--no-evidence")
    assert done.returncode == 1
    assert "error [digest-mismatch] checksum mismatch for bin/rt_1.2.3_linux_amd64" in done.stderr
    assert "INVALID" in done.stdout


def test_bad_input_exits_two(workspace: dict[str, Path], tmp_path: Path) -> None:
    trust = str(workspace["trust"])
    one_line_error(ringward("release", "verify-package", str(tmp_path / "nope"), "--trust-root", trust), 2,
                   "does not exist")
    one_line_error(ringward("release", "package", str(workspace["dist"]), "--version", "v1.2.3", "--commit", COMMIT,
                            "--ref", "r", "--repository", "a/b", "--signing-key", str(workspace["key"]), "--output",
                            str(tmp_path / "o")), 2, "--version")
    one_line_error(ringward("release", "package", str(workspace["dist"]), "--version", "1.2.3", "--commit", COMMIT,
                            "--ref", "r", "--repository", "a/b", "--output", str(tmp_path / "o")), 2,
                   "no signing key")
    junk = tmp_path / "junk-dist"
    junk.mkdir()
    (junk / "README").write_text("x")
    one_line_error(ringward("release", "package", str(junk), "--version", "1.2.3", "--commit", COMMIT, "--ref", "r",
                            "--repository", "a/b", "--dry-run", "--output", str(tmp_path / "o")), 2, "README")
    done = ringward("release", "verify-package")
    assert done.returncode == 2
    one_line_error(ringward("release", "channel-manifest", str(workspace["pkg"]), "--trust-root", trust,
                            "--channel", "nightly"), 2, "release channel not found: nightly")
    one_line_error(ringward("release", "smoke-installers", str(workspace["pkg"]), "--trust-root", trust,
                            "--timeout-seconds", "-1"), 2)


def test_dry_run_package_is_marked_and_refused(workspace: dict[str, Path], tmp_path: Path) -> None:
    done = ringward("release", "package", str(workspace["dist"]), "--version", "1.2.3", "--commit", COMMIT, "--ref",
                    "refs/tags/v1.2.3", "--repository", "acme/rt", "--dry-run", "--output", str(tmp_path),
                    "--no-evidence", env={"RINGWARD_SIGNING_KEY": ""})
    assert done.returncode == 0 and "UNSIGNED DRY RUN" in done.stdout and "NOT signed" in done.stderr
    pkg = tmp_path / "rt-1.2.3"
    refused = ringward("release", "verify-package", str(pkg), "--trust-root", str(workspace["trust"]),
                       "--no-evidence")
    assert refused.returncode == 1 and "unsigned-package" in refused.stderr
    allowed = ringward("release", "verify-package", str(pkg), "--trust-root", str(workspace["trust"]),
                       "--allow-unsigned", "--no-evidence")
    assert allowed.returncode == 0 and "WARNING: --allow-unsigned" in allowed.stderr


def test_airgap_upgrade_smoke_and_views(workspace: dict[str, Path], tmp_path: Path) -> None:
    trust = str(workspace["trust"])
    env = env_of(workspace)
    assert ringward("release", "verify-airgap-bundle", str(workspace["zip"]), "--trust-root", trust, "--extract-dir",
                    str(tmp_path / "x"), env=env).returncode == 0
    assert (tmp_path / "x" / "rt-1.2.3" / "checksums.txt").is_file()
    same = ringward("release", "validate-upgrade", str(workspace["pkg"]), str(workspace["pkg"]), "--trust-root",
                    trust, env=env)
    assert same.returncode == 1 and "must be newer" in same.stderr
    assert ringward("release", "validate-upgrade", str(workspace["pkg"]), str(workspace["pkg"]), "--trust-root",
                    trust, "--allow-same-version", env=env).returncode == 0
    smoke = ringward("release", "smoke-installers", str(workspace["pkg"]), "--trust-root", trust, "--json", env=env)
    assert smoke.returncode == 0, smoke.stderr
    assert json.loads(smoke.stdout)["executions"][0]["stdout"].strip() == "rt version 1.2.3"
    view = ringward("release", "channel-manifest", str(workspace["pkg"]), "--trust-root", trust, "--channel",
                    "stable", "--json")
    assert json.loads(view.stdout)["channels"][0]["ring_order"] == ["pilot", "broad", "enterprise"]
    policy = ringward("release", "updater-policy", str(workspace["pkg"]), "--trust-root", trust)
    assert policy.returncode == 0 and "stable" in policy.stdout


def test_views_refuse_unverified_package(workspace: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    pkg = tmp_path / "rt-1.2.3"
    shutil.copytree(workspace["pkg"], pkg)
    (pkg / "rt.channels.json").write_text((pkg / "rt.channels.json").read_text().replace("canary", "canarx"))
    done = ringward("release", "channel-manifest", str(pkg), "--trust-root", str(workspace["trust"]))
    one_line_error(done, 1, "does not verify")
    # every problem is named, not only the first
    (pkg / "rt.updater-policy.json").write_bytes((pkg / "rt.updater-policy.json").read_bytes() + b" ")
    both = ringward("release", "updater-policy", str(pkg), "--trust-root", str(workspace["trust"]))
    one_line_error(both, 1, "does not verify")
    assert "rt.channels.json" in both.stderr and "rt.updater-policy.json" in both.stderr, both.stderr


def test_cli_in_process_path_never_imports_prefect(workspace: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "from ringward.cli.main import run\n"
        "try:\n"
        f"    run(['release', 'verify-package', {str(workspace['pkg'])!r}, '--trust-root', "
        f"{str(workspace['trust'])!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print('PREFECT' if loaded else 'CLEAN')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env_of(workspace)}, check=False)
    assert done.stdout.strip().endswith("CLEAN"), done.stdout + done.stderr


def test_signing_key_never_reaches_output_or_evidence(workspace: dict[str, Path], tmp_path: Path) -> None:
    secret = workspace["key"].read_text()
    home = tmp_path / "home"
    done = ringward("release", "package", str(workspace["dist"]), "--version", "1.2.3", "--commit", COMMIT, "--ref",
                    "refs/tags/v1.2.3", "--repository", "acme/rt", "--output", str(tmp_path / "o"), "--json",
                    env={"RINGWARD_SIGNING_KEY": secret, "RINGWARD_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    body = secret.split("-----")[2].strip().replace("\n", "")
    assert body not in done.stdout + done.stderr
    for path in list(home.rglob("*")) + list((tmp_path / "o").rglob("*")):
        if path.is_file():
            assert body.encode() not in path.read_bytes().replace(b"\n", b""), path
