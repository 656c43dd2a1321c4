"""Every command's human-readable output path (no --json) runs and says what happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.advisories.conftest import CVSS_LOW, SYS_PURL, AdvisoryWorld, kev_catalog, later
from tests.release.simulator import NOW

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _human(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    from ringward.cli.main import run

    try:
        run(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err, out.err
    return code, out.out, out.err


def test_human_output_of_every_command(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    advisory = tmp_path / "advisory.json"
    args = [a for a in w.create_args(advisory, severity="low", cvss=CVSS_LOW, full=False) if a != "--json"]
    code, out, _ = _human(capsys, *args, "--user-safety", "identity-leak")
    assert code == 0 and "CREATED: RW-2026-0001 severity critical" in out and "note: raised from low" in out
    code, out, err = _human(capsys, "advisory", "check", str(advisory), "--trust-root", str(w.trust_root))
    assert code == 1 and "MISS rollout evidence" in out and "FAILED (" in out and "n/c  github keyless" in out
    code, _, err = _human(capsys, "advisory", "publish", str(advisory), "--signing-key", str(w.keys.advisory_pem),
                          "--trust-root", str(w.trust_root), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and "gate: rollout evidence: missing" in err
    low = tmp_path / "low.json"
    assert _human(capsys, *[a for a in w.create_args(low, severity="low", cvss=CVSS_LOW, full=False)
                            if a != "--json"])[0] == 0
    code, _, err = _human(capsys, "advisory", "publish", str(low), "--signing-key", str(w.keys.advisory_pem),
                          "--trust-root", str(w.trust_root), "--output-dir", str(tmp_path / "o2"), "--deliver",
                          str(tmp_path / "missing.yaml"))
    assert code == 2 and not (tmp_path / "o2").exists()
    code, out, err = _human(capsys, "advisory", "publish", str(low), "--signing-key", str(w.keys.advisory_pem),
                            "--trust-root", str(w.trust_root), "--output-dir", str(tmp_path / "o3"))
    assert code == 0 and "PUBLISHED: RW-2026-0001 (low) as x_RW-2026-0001" in out and "incomplete gate" in err

    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps(kev_catalog()))
    code, out, _ = _human(capsys, "kev", "import", str(kev), "--at", NOW.isoformat())
    assert code == 0 and "IMPORTED: KEV catalog 2026.11.20" in out
    code, out, _ = _human(capsys, "kev", "import", str(kev), "--at", NOW.isoformat())
    assert code == 0 and "UNCHANGED" in out
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"schema_version": "ringward.kev-product-map.v1", "products": [
        {"vendorProject": "Golang", "product": "x/sys", "purl": "pkg:golang/golang.org/x/sys"}]}))
    code, out, _ = _human(capsys, "kev", "check", str(w.package), "--trust-root", str(w.trust_root),
                          "--product-map", str(mapping), "--at", later(1).isoformat())
    assert code == 1 and f"MATCH {SYS_PURL} CVE-2026-20001" in out and "HELD: beta, canary, stable" in out
    code, out, _ = _human(capsys, "kev", "recheck", "--packages", str(w.sim.root), "--trust-root", str(w.trust_root))
    assert code == 0 and "no channel has a current release" in out

    vex = tmp_path / "vex.json"
    code, out, _ = _human(capsys, "vex", "create", "-v", "CVE-2026-20001", "-p", SYS_PURL, "-s", "not_affected",
                          "--impact-statement", "x/sys syscall wrappers are not reachable", "--author", "sec",
                          "--output", str(vex), "--package", str(w.package), "--trust-root", str(w.trust_root),
                          "--at", later(1.1).isoformat())
    assert code == 0 and "CREATED: https://ringward.dev/vex/vex-" in out and "stored with release sha256:" in out
    code, out, _ = _human(capsys, "vex", "validate", str(vex), "--at", later(1.2).isoformat())
    assert code == 0 and "VALID:" in out
    code, out, _ = _human(capsys, "vex", "merge", str(vex), "--author", "sec", "--output", str(tmp_path / "m.json"),
                          "--at", later(1.2).isoformat())
    assert code == 0 and "MERGED: 1 document(s) -> 1 statement(s)" in out
    code, out, _ = _human(capsys, "kev", "check", str(w.package), "--trust-root", str(w.trust_root),
                          "--product-map", str(mapping), "--at", later(1.3).isoformat())
    assert code == 0 and "resolved" in out and "CLEAR: 1.2.3; released beta, canary, stable" in out
