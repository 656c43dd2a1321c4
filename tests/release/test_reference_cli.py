"""`ringward release ... --profile` through the console-script entry point (in-process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringward.core.trust.root import TrustRoot
from tests.release.reference_packages import ReferenceGenerator, zip_package
from tests.release.simulator import NOW, trusted

AT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    gen = ReferenceGenerator(tmp_path / "ref")
    trust = tmp_path / "trust.json"
    trust.write_text(TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra-release"),)).model_dump_json())
    return {"gen": gen, "trust": str(trust), "tmp": tmp_path}


def ringward(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from ringward.cli.main import run

    with pytest.raises(SystemExit) as exited:
        run(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exited.value.code or 0), out.out, out.err


def test_verify_package_reference_and_auto(ws, capsys) -> None:
    pkg = str(ws["gen"].package("1.2.5"))
    code, out, err = ringward(capsys, "release", "verify-package", pkg, "--trust-root", ws["trust"], "--at", AT,
                              "--profile", "reference", "--no-evidence")
    assert code == 0 and "VALID" in out, err
    assert "profile reference" in err
    assert "warning: release-evidence.md: present, not covered by any signature, ignored" in err
    code, out, err = ringward(capsys, "release", "verify-package", pkg, "--trust-root", ws["trust"], "--at", AT,
                              "--profile", "auto", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["profile"]["name"] == "reference" and result["profile"]["source"] == "detected"
    assert result["evidence"]["evidence_id"]
    code, out, err = ringward(capsys, "release", "verify-package", pkg, "--trust-root", ws["trust"], "--at", AT,
                              "--profile", "auto")
    assert "profile reference (detected: release-evidence.json product 'CAVRA')" in err


def test_default_profile_refusal_says_how_to_ask(ws, capsys) -> None:
    pkg = str(ws["gen"].package("1.2.5"))
    code, out, err = ringward(capsys, "release", "verify-package", pkg, "--trust-root", ws["trust"], "--at", AT,
                              "--no-evidence")
    assert code == 1 and "INVALID" in out
    hints = [line for line in err.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "--profile reference" in hints[0]


def test_bad_profile_is_bad_input(ws, capsys) -> None:
    pkg = str(ws["gen"].package("1.2.5"))
    code, _, err = ringward(capsys, "release", "verify-package", pkg, "--trust-root", ws["trust"], "--profile",
                            "cavra")
    assert code == 2 and err.strip().startswith("error: --profile: expected one of ringward, reference, auto")


def test_views_airgap_smoke_and_upgrade(ws, capsys) -> None:
    gen = ws["gen"]
    old, new = gen.package("1.2.4", out="a"), gen.package("1.2.5", out="b")
    common = ["--trust-root", ws["trust"], "--at", AT]
    code, out, err = ringward(capsys, "release", "channel-manifest", str(new), *common, "--profile", "reference",
                              "--channel", "stable", "--json")
    assert code == 0, err
    assert json.loads(out)["profile"] == "reference" and json.loads(out)["channels"][0]["channel"] == "stable"
    code, out, err = ringward(capsys, "release", "updater-policy", str(new), *common, "--profile", "auto")
    assert code == 0 and "profile reference (detected" in err and "stable" in out
    code, _, err = ringward(capsys, "release", "updater-policy", str(new), *common)
    assert code == 1 and "--profile reference" in err and len(err.strip().splitlines()) == 1
    code, out, err = ringward(capsys, "release", "verify-airgap-bundle", str(zip_package(new)), *common,
                              "--profile", "reference", "--no-evidence")
    assert code == 0 and "VALID" in out, err
    code, out, err = ringward(capsys, "release", "smoke-installers", str(new), *common, "--profile", "reference",
                              "--skip-execution", "--no-evidence")
    assert code == 0, err
    code, out, err = ringward(capsys, "release", "validate-upgrade", str(old), str(new), *common, "--profile",
                              "reference", "--no-evidence")
    assert code == 0 and "previous 1.2.4 -> candidate 1.2.5" in out, err
    code, out, err = ringward(capsys, "release", "validate-upgrade", str(old), str(new), *common, "--no-evidence")
    assert code == 1 and "previous 1.2.4 -> candidate 1.2.5" in out  # versions known though not verified
    assert "hint:" in err


def test_paths_that_are_not_package_directories(ws, capsys) -> None:
    pkg = ws["gen"].package("1.2.5")
    archive = zip_package(pkg)
    code, _, err = ringward(capsys, "release", "verify-package", str(archive), "--trust-root", ws["trust"])
    assert code == 2 and "is a zip archive" in err and "verify-airgap-bundle" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = ringward(capsys, "release", "verify-package", str(pkg / "checksums.txt"), "--trust-root",
                            ws["trust"])
    assert code == 2 and "is a file, not a package directory" in err


def test_views_accept_no_evidence(ws, capsys) -> None:
    pkg = str(ws["gen"].package("1.2.5"))
    for view in ("channel-manifest", "updater-policy"):
        code, _, err = ringward(capsys, "release", view, pkg, "--trust-root", ws["trust"], "--at", AT, "--profile",
                                "reference", "--no-evidence")
        assert code == 0, err
