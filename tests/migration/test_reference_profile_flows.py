"""`--profile` with `--prefect` beyond verify-package: validate-upgrade (with and without --channel)
and verify-airgap-bundle run their flows under the profile asked for (flow runs on the shared server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringward.core.trust.root import TrustRoot
from tests.release.reference_packages import ReferenceGenerator, zip_package
from tests.release.simulator import NOW, trusted

pytestmark = pytest.mark.prefect

AT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ringward(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from ringward.cli.main import run

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exited.value.code or 0), out.out, out.err


@pytest.fixture
def ws(tmp_path: Path, ringward_home: Path) -> dict[str, Any]:
    gen = ReferenceGenerator(tmp_path / "ref")
    trust = tmp_path / "trust.json"
    trust.write_text(TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra-release"),)).model_dump_json())
    return {"gen": gen, "trust": str(trust)}


def test_validate_upgrade_flow_runs_under_the_reference_profile(
    prefect_server: None, ws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    old = str(ws["gen"].package("v1.2.5"))
    new = str(ws["gen"].package("v1.2.6"))

    code, out, err = _ringward(capsys, "release", "validate-upgrade", old, new, "--trust-root", ws["trust"],
                               "--at", AT, "--profile", "reference", "--prefect", "--json")

    result = json.loads(out)
    assert code == 0, (out, err)
    assert result["valid"] is True
    for side in ("previous", "candidate"):
        assert result[side]["profile"]["name"] == "reference" and result[side]["profile"]["source"] == "explicit"
    from ringward.store import open_store

    with open_store() as store:  # it ran as a flow run: the evidence names it
        assert store.get_evidence(int(result["evidence"]["evidence_id"])).flow_run_id

    # the default profile refuses the same packages through the same flow (strict as before)
    code, out, _ = _ringward(capsys, "release", "validate-upgrade", old, new, "--trust-root", ws["trust"],
                             "--at", AT, "--prefect", "--json", "--no-evidence")
    assert code == 1 and json.loads(out)["valid"] is False


def test_airgap_flow_detects_the_reference_format_with_auto(
    prefect_server: None, ws: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle = zip_package(ws["gen"].package("v1.2.5"), tmp_path / "cavra-go-runtime-v1.2.5.zip")

    code, out, err = _ringward(capsys, "release", "verify-airgap-bundle", str(bundle), "--trust-root", ws["trust"],
                               "--at", AT, "--profile", "auto", "--prefect", "--json", "--allow-missing-bootstrap")

    result = json.loads(out)
    assert code == 0, (out, err)
    assert result["valid"] is True
    assert result["profile"]["name"] == "reference" and result["profile"]["source"] == "detected"


def test_channel_upgrade_flow_runs_under_the_reference_profile(
    prefect_server: None, ws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    old = str(ws["gen"].package("v1.2.5"))
    new = str(ws["gen"].package("v1.2.6"))

    code, out, err = _ringward(capsys, "release", "validate-upgrade", old, new, "--trust-root", ws["trust"],
                               "--at", AT, "--profile", "reference", "--prefect", "--channel", "stable", "--json")

    result = json.loads(out)
    assert code == 0, (out, err)
    assert result["valid"] is True and result["channel"] == "stable" and result["channel_check"]["passed"]
    assert result["candidate"]["profile"]["name"] == "reference"
