"""`ringward advisory create | check`: the advisory record and its completeness gate.

One fully linked advisory (package, rollout, execution, delivery, evidence) passes; then each
item is removed or broken in turn and the gate must name it (missing / failing) and exit 1."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from ringward.core.advisories.record import ADVISORY_SCHEMA, EvidenceItem, PackageDocument
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft
from ringward.operations.advisories.advisory_ops import KIND_ADVISORY, KIND_GATE, check_advisory
from tests.advisories.conftest import CVSS_LOW, AdvisoryWorld, cli, later
from tests.release.simulator import ReleaseSimulator

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

Mutation = Callable[[dict[str, Any]], Any]


def _gate(w: AdvisoryWorld, doc: dict[str, Any], path: Path) -> dict[str, Any]:
    path.write_text(json.dumps(doc))
    return check_advisory(w.store, advisory=path, trust_root=w.trust_root, actor="auditor", now=later(0.6))


def _statuses(result: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["status"] for item in result["items"]}


def _links(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["links"]  # type: ignore[no-any-return]


MISSING: list[tuple[str, Mutation, str]] = [
    ("release package", lambda d: _links(d).update(packages=[]), "release package"),
    ("rollout evidence", lambda d: _links(d).update(rollouts=[]), "rollout evidence"),
    ("promotion execution", lambda d: _links(d).update(promotion_executions=[]), "promotion execution"),
    ("connector delivery", lambda d: _links(d).update(deliveries=[]), "connector delivery"),
    ("customer impact", lambda d: d.update(customer_impact=None), "customer impact and exploitation prerequisites"),
    ("prerequisites", lambda d: d.update(exploitation_prerequisites=None),
     "customer impact and exploitation prerequisites"),
    ("mitigation", lambda d: d.update(mitigation_before_upgrade=None), "mitigation before upgrade"),
    ("pull request", lambda d: d["fix"].update(pull_request=None),
     "fixed commit, pull request and release asset links"),
    ("release assets", lambda d: d["fix"].update(release_assets=[]),
     "fixed commit, pull request and release asset links"),
    ("fixed commit", lambda d: d["fix"].update(commit=None), "fixed commit is the release's commit (1.2.3)"),
    ("verification steps", lambda d: d.update(verification_steps=[]), "verification steps"),
    ("sbom", lambda d: _links(d)["packages"][0]["documents"].pop(PackageDocument.SBOM.value), "SBOM (1.2.3)"),
    ("provenance", lambda d: _links(d)["packages"][0]["documents"].pop(PackageDocument.PROVENANCE.value),
     "SLSA provenance (1.2.3)"),
    ("checksums", lambda d: _links(d)["packages"][0]["documents"].pop(PackageDocument.CHECKSUMS.value),
     "checksums (1.2.3)"),
    ("signatures", lambda d: _links(d)["packages"][0].update(signature_files=[]), "detached signatures (1.2.3)"),
]

FAILING: list[tuple[str, Mutation, str]] = [
    ("package digest", lambda d: _links(d)["packages"][0].update(checksums_digest="sha256:" + "0" * 64),
     "release package rt 1.2.3"),
    ("sbom digest", lambda d: _links(d)["packages"][0]["documents"][PackageDocument.SBOM.value].update(
        sha256="1" * 64), "SBOM (1.2.3)"),
    ("channel manifest digest", lambda d: _links(d)["packages"][0]["documents"][
        PackageDocument.CHANNEL_MANIFEST.value].update(sha256="2" * 64), "release channel review (channel manifest) "
     "(1.2.3)"),
    ("rollout digest", lambda d: _links(d)["rollouts"][0].update(evidence_sha256="3" * 64), "rollout evidence"),
    ("execution digest", lambda d: _links(d)["promotion_executions"][0].update(sha256="4" * 64),
     "promotion execution"),
    ("delivery hash", lambda d: _links(d)["deliveries"][0].update(record_hash="5" * 64), "connector delivery"),
    ("delivery of another kind", lambda d: _links(d)["deliveries"][0].update(
        evidence_id=_links(d)["rollouts"] and 1), "connector delivery"),
    ("evidence record gone", lambda d: _links(d)["evidence"][EvidenceItem.AUDIT_EXPORT.value][0].update(
        evidence_id=99999), "audit-export 99999"),
    ("fix commit", lambda d: d["fix"].update(commit="deadbeef"), "fixed commit is the release's commit (1.2.3)"),
    ("fixed inside range", lambda d: d["affected"].update(range="vers:golang/>=1.0.0|<1.3.0"),
     "affected and fixed versions"),
    ("package path gone", lambda d: _links(d)["packages"][0].update(path="/nonexistent/package"),
     "release package rt 1.2.3"),
]


def test_complete_advisory_passes_then_each_item_is_named(
    advisory_world: AdvisoryWorld, httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    w.promote_and_deliver(httpserver)
    path = tmp_path / "advisory.json"
    code, created, _ = cli(capsys, *w.create_args(path))
    assert code == 0 and created is not None
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == ADVISORY_SCHEMA and doc["severity"]["effective"] == "high"
    assert doc["links"]["packages"][0]["checksums_digest"].startswith("sha256:")
    assert set(doc["links"]["packages"][0]["documents"]) == {d.value for d in PackageDocument}
    assert doc["timeline"]["acknowledged"] == "2026-11-01"
    record = w.store.get_evidence(created["evidence_id"])
    assert record.kind == KIND_ADVISORY and record.payload["advisory_sha256"] == created["advisory_sha256"]

    code, passed, _ = cli(capsys, "advisory", "check", str(path), "--trust-root", str(w.trust_root), "--at",
                          later(0.6).isoformat(), "--json")
    assert code == 0 and passed is not None and passed["passed"] is True, passed
    statuses = _statuses(passed)
    assert statuses["release package rt 1.2.3"] == "ok" and statuses["github keyless attestation"] == "not-checked"
    assert statuses["upgrade-validation"] == "not-linked"  # recommended, not required
    assert w.store.get_evidence(passed["evidence_id"]).kind == KIND_GATE

    for label, mutate, item in MISSING:
        broken = copy.deepcopy(doc)
        mutate(broken)
        result = _gate(w, broken, tmp_path / f"missing-{label}.json")
        assert result["passed"] is False, label
        assert _statuses(result).get(item) == "missing", (label, _statuses(result))
        assert any(p.startswith(f"{item}: missing") for p in result["problems"]), (label, result["problems"])

    for label, mutate, item in FAILING:
        broken = copy.deepcopy(doc)
        mutate(broken)
        result = _gate(w, broken, tmp_path / f"failing-{label}.json")
        assert result["passed"] is False, label
        failing = [name for name, status in _statuses(result).items() if status == "failing"]
        assert any(name.startswith(item) for name in failing), (label, failing)

    # files changed on disk after the advisory was written
    execution = Path(w.evidence["executed"]["execution_path"])
    original = execution.read_bytes()
    execution.write_bytes(original.replace(b'"executed"', b'"executed" '))
    result = _gate(w, doc, tmp_path / "exec-altered.json")
    assert any(n.startswith("promotion execution") and s == "failing" for n, s in _statuses(result).items())
    execution.write_bytes(original)
    ReleaseSimulator.flip_bit(w.package / "bin" / "rt_1.2.3_linux_amd64")
    code, failed, err = cli(capsys, "advisory", "check", str(path), "--trust-root", str(w.trust_root), "--at",
                            later(0.6).isoformat(), "--json")
    assert code == 1 and failed is not None
    assert _statuses(failed)["release package rt 1.2.3"] == "failing"
    assert "does not re-verify against the trust root" in err and "rt_1.2.3_linux_amd64" in err, err
    gates = w.store.search_evidence(EvidenceQuery(kind=KIND_GATE, limit=100)).items
    assert gates[0].subject.status == "failed" and gates[0].subject.success is False


def test_minimal_advisory_is_written_but_its_gate_fails_by_name(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    path = tmp_path / "advisory.json"
    code, created, _ = cli(capsys, *w.create_args(path, full=False))
    assert code == 0 and created is not None
    code, _, err = cli(capsys, "advisory", "check", str(path), "--trust-root", str(w.trust_root), "--at",
                       later(0.6).isoformat())
    assert code == 1
    for name in ("rollout evidence: missing", "promotion execution: missing", "connector delivery: missing",
                 "mitigation before upgrade: missing", "customer impact and exploitation prerequisites: missing"):
        assert f"error: {name}" in err, err
    assert "error: release package" not in err  # the package itself verifies


def test_user_safety_class_makes_the_advisory_critical(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    code, created, _ = cli(capsys, *w.create_args(tmp_path / "a.json", severity="low", cvss=CVSS_LOW, full=False,
                                                  extra=("--user-safety", "identity-leak")))
    assert code == 0 and created is not None and created["severity"] == "critical"
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["severity"]["declared"] == "low" and doc["severity"]["user_safety_classes"] == ["identity-leak"]
    assert doc["severity"]["cvss"]["rating"] == "Low" and "always critical" in doc["severity"]["rule"]


@pytest.mark.parametrize(("extra", "expected"), [
    (("--cvss", "CVSS:4.0/AV:N"), "--cvss: invalid CVSS v4.0 vector"),
    (("--severity", "urgent"), "--severity: expected one of"),
    (("--affected", ">=1.0.0|<1.3.0"), "release 1.2.3 is inside the affected range"),
    (("--fixed", "1.1.0"), "--fixed 1.1.0: inside the affected range"),
    (("--cwe", "CWE-x"), "cwe"),
    (("--cve", "CVE-1"), "cve"),
    (("--id", "x"), "advisory_id"),
    (("--purl", "pkg:golang/github.com/acme/runtime@v1"), "names no version"),
    (("--evidence", "installer-smoke"), "expected ITEM=EVIDENCE_ID"),
    (("--evidence", "coffee=1"), "unknown item 'coffee'"),
    (("--evidence", "installer-smoke=1"), "kind"),
    (("--delivery", "424242"), "--delivery: evidence record 424242 does not exist"),
    (("--user-safety", "telemetry"), "--user-safety: expected one of"),
    (("--acknowledged", "yesterday"), "--acknowledged: expected YYYY-MM-DD"),
    (("--rollout", "/nonexistent"), "--rollout /nonexistent: rollout directory does not exist"),
])
def test_create_refuses_bad_input_with_exit_2(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...],
    expected: str,
) -> None:
    w = advisory_world
    w.store.append(EvidenceDraft(kind="release-package-verification", actor="x", payload={"seed": True}))
    out = tmp_path / "advisory.json"
    code, _, err = cli(capsys, *w.create_args(out, full=False, extra=extra))
    assert code == 2, err
    assert expected in err, err
    assert not out.exists()
    assert not w.store.search_evidence(EvidenceQuery(kind=KIND_ADVISORY, limit=5)).items


def test_create_refuses_an_unverifiable_package_with_exit_1_and_records_it(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    forged = w.sim.package("1.2.3", out="forged", key=w.sim.attacker_key)
    args = w.create_args(tmp_path / "a.json", full=False)
    args[args.index(str(w.package))] = str(forged)
    code, _, err = cli(capsys, *args)
    assert code == 1 and "error: release package" in err
    (refusal,) = w.store.search_evidence(EvidenceQuery(kind=KIND_ADVISORY, limit=5)).items
    assert refusal.payload["refused"] is True and refusal.subject.status == "refused"
    code, _, err = cli(capsys, *w.create_args(tmp_path / "a.json", full=False))
    assert code == 0
    code, _, err = cli(capsys, *w.create_args(tmp_path / "a.json", full=False))
    assert code == 2 and "exists; refusing to overwrite" in err


def test_check_bad_input(advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = advisory_world
    bad = tmp_path / "bad.json"
    for content, expected in (("{", "invalid JSON"), ('{"schema_version": "other"}', "schema_version expected"),
                              (json.dumps({"schema_version": ADVISORY_SCHEMA}), "advisory_id")):
        bad.write_text(content)
        code, _, err = cli(capsys, "advisory", "check", str(bad), "--trust-root", str(w.trust_root))
        assert code == 2 and expected in err, err
    code, _, err = cli(capsys, "advisory", "check", str(tmp_path / "none.json"), "--trust-root", str(w.trust_root))
    assert code == 2 and "does not exist" in err


def test_create_refuses_rollouts_and_executions_of_another_release(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.promotion.conftest import RolloutWorld

    w = advisory_world
    other = RolloutWorld(w.store, w.keys, w.sim, w.work, w.sim.package("1.3.0", out="other"))
    captured, _, executed = other.promoted()
    for option, path, expected in (("--rollout", captured["output_dir"], "rolls out release 1.3.0"),
                                   ("--execution", executed["execution_path"], "promotes release 1.3.0")):
        out = tmp_path / f"{option[2:]}.json"
        code, _, err = cli(capsys, *w.create_args(out, full=False, extra=(option, path)))
        assert code == 1 and expected in err and "which no --package links" in err, err
        assert not out.exists()
    refusals = w.store.search_evidence(EvidenceQuery(kind=KIND_ADVISORY, limit=5)).items
    assert [r.payload["error"]["code"] for r in refusals] == ["binding-mismatch", "binding-mismatch"]
    # an execution file that is not the one the ledger recorded is refused too
    forged = tmp_path / "rollout-promotion-execution.json"
    forged.write_bytes(Path(executed["execution_path"]).read_bytes().replace(b'"execution_id"', b' "execution_id"'))
    code, _, err = cli(capsys, *w.create_args(tmp_path / "x.json", full=False, extra=("--execution", str(forged))))
    assert code == 1 and "the record was altered" in err
