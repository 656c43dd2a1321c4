"""`ringward advisory publish`: gate, advisory-role signature, OSV (validated against the
vendored OSV schema), GitHub-advisory-shaped JSON, the seed-template text, delivery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pytest_httpserver import HTTPServer

from ringward.core.advisories.record import ADVISORY_SIGNATURE_SCHEMA
from ringward.core.advisories.validation import SchemaName, schema_document
from ringward.core.errors import SignatureError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.promotion.signed_payload import verify_signed_payload
from ringward.core.trust.root import Role
from ringward.operations.advisories.advisory_ops import KIND_PUBLICATION
from ringward.store.advisories.state import PUBLISHED_NAMESPACE, AdvisoryStateRepository
from tests.advisories.conftest import CVSS_CRITICAL, CVSS_LOW, AdvisoryWorld, cli, later

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _publish(w: AdvisoryWorld, capsys: pytest.CaptureFixture[str], advisory: Path, out: Path, *extra: str,
             key: Path | None = None) -> tuple[int, dict[str, Any] | None, str]:
    return cli(capsys, "advisory", "publish", str(advisory), "--signing-key", str(key or w.keys.advisory_pem),
               "--trust-root", str(w.trust_root), "--output-dir", str(out), "--at", later(0.7).isoformat(), "--json",
               *extra)


def _osv_errors(doc: dict[str, Any]) -> list[str]:
    schema = schema_document(SchemaName.OSV)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(doc)]


def test_publish_signs_exports_indexes_and_delivers(
    advisory_world: AdvisoryWorld, httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    w.promote_and_deliver(httpserver)
    advisory = tmp_path / "advisory.json"
    assert cli(capsys, *w.create_args(advisory))[0] == 0
    out = tmp_path / "published"
    code, result, err = _publish(w, capsys, advisory, out, "--deliver", str(w.evidence["config"]))
    assert code == 0, err
    assert result is not None and result["gate_passed"] is True and result["osv_id"] == "x_RW-2026-0001"
    assert result["delivery"]["success"] is True
    sent = json.loads(httpserver.log[-1][0].get_data())
    assert sent["event"]["event_type"] == "ringward.advisory.published"
    assert sent["event"]["attributes"]["cve"] == "CVE-2026-10001"

    signed = json.loads((out / "advisory.json").read_text())
    check = verify_signed_payload(signed, trust_root=w.keys.trust(), role=Role.ADVISORY, now=later(0.8),
                                  label="advisory", schema_version=ADVISORY_SIGNATURE_SCHEMA)
    assert check.payload_sha256 == result["signed_sha256"]
    signed["summary"] = "something else"
    with pytest.raises(SignatureError, match="changed after signing"):
        verify_signed_payload(signed, trust_root=w.keys.trust(), role=Role.ADVISORY, now=later(0.8), label="a")

    osv = json.loads((out / "advisory.osv.json").read_text())
    assert _osv_errors(osv) == []
    assert osv["severity"] == [{"type": "CVSS_V4", "score": CVSS_CRITICAL}]
    assert osv["aliases"] == ["CVE-2026-10001"]
    assert osv["affected"][0]["package"] == {"ecosystem": "Go", "name": "github.com/acme/runtime",
                                             "purl": "pkg:golang/github.com/acme/runtime"}
    assert osv["affected"][0]["ranges"] == [{"type": "SEMVER", "events": [{"introduced": "1.0.0"},
                                                                           {"fixed": "1.2.3"}]}]
    assert osv["credits"] == [{"name": "alice@example.org", "type": "REPORTER"}]

    ghsa = json.loads((out / "advisory.ghsa.json").read_text())
    assert ghsa["severity"] == "high" and ghsa["cwe_ids"] == ["CWE-347"] and ghsa["cve_id"] == "CVE-2026-10001"
    assert ghsa["vulnerabilities"] == [{"package": {"ecosystem": "go", "name": "github.com/acme/runtime"},
                                        "vulnerable_version_range": ">= 1.0.0, < 1.2.3", "patched_versions": "1.2.3",
                                        "vulnerable_functions": []}]
    assert ghsa["cvss_vector_string"] == CVSS_CRITICAL

    text = (out / "advisory.md").read_text()
    for line in ("**Summary**: Updater accepts", "**Patched**: 1.2.3", "**CVE**: CVE-2026-10001", "**CWE**: CWE-347",
                 f"**CVSS v4**: {CVSS_CRITICAL} (9.3 Critical)", "**Reporter**: alice@example.org",
                 "**Acknowledgement**: 2026-11-01", "**Disclosure**: not yet",
                 "- security: github.com/acme/runtime — fix CVE-2026-10001"):
        assert line in text, line

    (record,) = w.store.search_evidence(EvidenceQuery(kind=KIND_PUBLICATION, limit=5)).items
    assert record.subject.status == "published" and record.bundle_dir is not None
    assert record.payload["files"]["advisory.osv.json"]
    indexed = AdvisoryStateRepository(w.store).get(PUBLISHED_NAMESPACE, "RW-2026-0001")
    assert indexed is not None and indexed.value["cves"] == ["CVE-2026-10001"]
    assert indexed.value["purl"] == "pkg:golang/github.com/acme/runtime"

    code, _, err = _publish(w, capsys, advisory, out)
    assert code == 2 and "not empty" in err


@pytest.mark.parametrize(("severity", "cvss", "extra"), [
    ("high", CVSS_CRITICAL, ()),
    ("critical", CVSS_CRITICAL, ()),
    ("low", CVSS_LOW, ("--user-safety", "duress-detectability")),  # critical by the playbook rule
])
def test_high_or_critical_is_refused_while_the_gate_fails(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], severity: str, cvss: str,
    extra: tuple[str, ...],
) -> None:
    w = advisory_world
    advisory = tmp_path / "advisory.json"
    assert cli(capsys, *w.create_args(advisory, severity=severity, cvss=cvss, full=False, extra=extra))[0] == 0
    out = tmp_path / "published"
    code, _, err = _publish(w, capsys, advisory, out)
    assert code == 1 and "cannot be published while the completeness gate fails" in err
    assert "gate: rollout evidence: missing" in err and "gate: connector delivery: missing" in err
    assert not out.exists()
    (refusal,) = w.store.search_evidence(EvidenceQuery(kind=KIND_PUBLICATION, limit=5)).items
    assert refusal.payload["refused"] is True and refusal.payload["error"]["code"] == "advisory-gate-failed"
    assert any(p.startswith("promotion execution: missing") for p in refusal.payload["gate_problems"])
    assert AdvisoryStateRepository(w.store).get(PUBLISHED_NAMESPACE, "RW-2026-0001") is None


def test_low_advisory_publishes_with_an_incomplete_gate_and_says_so(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    advisory = tmp_path / "advisory.json"
    assert cli(capsys, *w.create_args(advisory, severity="low", cvss=CVSS_LOW, full=False))[0] == 0
    code, result, _ = _publish(w, capsys, advisory, tmp_path / "out")
    assert code == 0 and result is not None and result["gate_passed"] is False and result["severity"] == "low"
    assert "rollout evidence: missing" in result["gate_problems"]
    osv = json.loads((tmp_path / "out" / "advisory.osv.json").read_text())
    assert _osv_errors(osv) == [] and "credits" in osv


def test_only_a_pinned_advisory_role_key_signs(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    advisory = tmp_path / "advisory.json"
    assert cli(capsys, *w.create_args(advisory, severity="low", cvss=CVSS_LOW, full=False))[0] == 0
    code, _, err = _publish(w, capsys, advisory, tmp_path / "a", key=w.keys.release_pem)
    assert code == 1 and "expected a advisory-role key" in err
    code, _, err = _publish(w, capsys, advisory, tmp_path / "b", key=w.keys.unpinned_pem)
    assert code == 1 and "which the trust root does not pin" in err
    code, _, err = _publish(w, capsys, advisory, tmp_path / "c", key=tmp_path / "nokey.pem")
    assert code == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    refusals = w.store.search_evidence(EvidenceQuery(kind=KIND_PUBLICATION, limit=5)).items
    assert {r.payload["error"]["code"] for r in refusals} == {"untrusted-key"}


def test_recorded_severity_is_recomputed_never_trusted(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    advisory = tmp_path / "advisory.json"
    extra = ("--user-safety", "phone-home")
    assert cli(capsys, *w.create_args(advisory, severity="low", cvss=CVSS_LOW, full=False, extra=extra))[0] == 0
    doc = json.loads(advisory.read_text())
    doc["severity"].update(effective="low", rule="declared severity", first_action_sla_hours=168)
    advisory.write_text(json.dumps(doc))
    code, result, _ = cli(capsys, "advisory", "check", str(advisory), "--trust-root", str(w.trust_root), "--json")
    assert code == 1 and result is not None
    (item,) = [i for i in result["items"] if i["name"] == "severity and affected components"]
    assert item["status"] == "failing" and "expected critical" in item["detail"]
    code, _, err = _publish(w, capsys, advisory, tmp_path / "out")
    assert code == 1 and "a critical advisory cannot be published" in err and not (tmp_path / "out").exists()
    doc["severity"]["cvss"]["vector"] = "CVSS:4.0/AV:N"
    advisory.write_text(json.dumps(doc))
    code, result, _ = cli(capsys, "advisory", "check", str(advisory), "--trust-root", str(w.trust_root), "--json")
    assert code == 1 and result is not None
    assert any(i["name"] == "severity and affected components" and "severity.cvss.vector" in i["detail"]
               for i in result["items"])


def test_a_published_advisory_checks_its_signature(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    advisory = tmp_path / "advisory.json"
    assert cli(capsys, *w.create_args(advisory, severity="low", cvss=CVSS_LOW, full=False))[0] == 0
    assert _publish(w, capsys, advisory, tmp_path / "out")[0] == 0
    signed = tmp_path / "out" / "advisory.json"
    code, result, _ = cli(capsys, "advisory", "check", str(signed), "--trust-root", str(w.trust_root), "--json")
    assert result is not None
    (item,) = [i for i in result["items"] if i["name"] == "advisory signature"]
    assert item["status"] == "ok" and "advisory-role key" in item["detail"]
    doc = json.loads(signed.read_text())
    doc["affected"]["fixed"] = ["1.2.4"]
    signed.write_text(json.dumps(doc))
    code, result, err = cli(capsys, "advisory", "check", str(signed), "--trust-root", str(w.trust_root), "--json")
    assert code == 1 and "error: advisory signature: failing" in err and "changed after signing" in err
