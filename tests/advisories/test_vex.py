"""OpenVEX v0.2.0: strict validation (vendored schema + go-vex statement rules), @id, merge
(latest statement per product+vulnerability wins), and the CLI's exit codes."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from packageurl import PackageURL

from ringward.core.advisories.validation import SchemaName, schema_document, schema_problems
from ringward.core.advisories.vex import (
    OPENVEX_CONTEXT,
    VEX_ID_PREFIX,
    Justification,
    VexInvalidError,
    VexStatus,
    build_document,
    build_statement,
    document_problems,
    effective_statements,
    merge,
    parse_vex,
    purl_matches,
    status_for,
)
from ringward.core.errors import InputError
from tests.advisories.conftest import SYS_PURL, cli

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CVE = "CVE-2026-20001"


def _doc(status: VexStatus = VexStatus.NOT_AFFECTED, *, at: datetime = NOW, product: str = SYS_PURL,
         **kwargs: Any) -> dict[str, Any]:
    if status is VexStatus.NOT_AFFECTED and not kwargs:
        kwargs = {"justification": Justification.VULNERABLE_CODE_NOT_IN_EXECUTE_PATH}
    if status is VexStatus.AFFECTED and not kwargs:
        kwargs = {"action_statement": "Upgrade to 1.2.4"}
    statement = build_statement(vulnerability=CVE, products=[product], status=status, timestamp=at, **kwargs)
    return build_document([statement], author="security@acme.example", timestamp=at).document()


def _official_schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = schema_document(SchemaName.OPENVEX)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("status", list(VexStatus))
def test_generated_documents_validate_against_the_vendored_schema(status: VexStatus) -> None:
    doc = _doc(status)
    assert _official_schema_errors(doc) == []
    assert doc["@context"] == OPENVEX_CONTEXT and doc["@id"].startswith(VEX_ID_PREFIX)
    assert doc["version"] == 1 and doc["timestamp"] == "2026-12-01T12:00:00Z"
    assert document_problems(doc, now=NOW)[0] == []


def test_id_is_derived_from_content() -> None:
    assert _doc()["@id"] == _doc()["@id"]
    assert _doc()["@id"] != _doc(VexStatus.FIXED)["@id"]


def _mutated(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    change(doc)
    return doc


def _st(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["statements"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: _st(d).pop("justification"), "requires a justification or an impact_statement"),
    (lambda d: _st(d).update(status="affected", justification=None) or _st(d).pop("justification"),
     "status affected requires an action_statement"),
    (lambda d: _st(d).update(status="affected", action_statement="upgrade"),
     "status affected must not carry a justification"),
    (lambda d: _st(d).update(status="fixed"), "status fixed must not carry justification"),
    (lambda d: _st(d).update(status="under_investigation"), "status under_investigation must not carry"),
    (lambda d: _st(d).update(action_statement="upgrade"), "not_affected must not carry an action_statement"),
    (lambda d: _st(d).update(status="wontfix"), "is not one of"),
    (lambda d: _st(d).update(justification="because"), "is not one of"),
    (lambda d: _st(d).update(impact_statement="not reachable"), "is not valid under any of the given schemas"),
    (lambda d: d.update(extra=True), "Additional properties are not allowed"),
    (lambda d: _st(d).update(extra=True), "Additional properties are not allowed"),
    (lambda d: d.update({"@context": "https://openvex.dev/ns/v0.0.1"}), "expected 'https://openvex.dev/ns/v0.2.0'"),
    (lambda d: d.update({"@id": "not an iri"}), "$.@id: expected an IRI"),
    (lambda d: d.update(timestamp="2026-13-40T00:00:00Z"), "is not a 'date-time'"),
    (lambda d: _st(d).update(timestamp="2026-12-02T12:00:00Z"), "is in the future"),
    (lambda d: _st(d).pop("products"), "a statement needs at least one product"),
    (lambda d: _st(d).update(products=[{"identifiers": {"purl": "golang/x"}}]), "not a package URL"),
    (lambda d: d.update(version=0), "less than the minimum of 1"),
    (lambda d: d.update(statements=[]), "should be non-empty"),
    (lambda d: d.pop("author"), "'author' is a required property"),
])
def test_each_rule_is_enforced(change: Any, expected: str) -> None:
    problems, _ = document_problems(_mutated(change), now=NOW)
    assert any(expected in p for p in problems), problems


def test_schema_allows_what_go_vex_forbids_and_we_refuse_it() -> None:
    doc = _mutated(lambda d: _st(d).update(status="fixed", justification="component_not_present"))
    assert schema_problems(SchemaName.OPENVEX, doc) == []  # the published schema accepts it
    problems, _ = document_problems(doc, now=NOW)
    assert problems == ["$.statements[0]: status fixed must not carry justification"]


def test_parse_vex_rejects_duplicate_keys_and_lists_problems() -> None:
    with pytest.raises(VexInvalidError, match="duplicate"):
        parse_vex(b'{"@id": "a", "@id": "b"}', source="x.json", now=NOW)
    bad = json.dumps(_mutated(lambda d: (_st(d).pop("justification"), d.update(extra=1)))).encode()
    with pytest.raises(VexInvalidError) as caught:
        parse_vex(bad, source="x.json", now=NOW)
    assert len(caught.value.problems) == 2 and "(2 problem(s))" in caught.value.message


def test_build_statement_refuses_what_the_spec_requires() -> None:
    with pytest.raises(InputError, match="requires a justification or an impact_statement"):
        build_statement(vulnerability=CVE, products=[SYS_PURL], status=VexStatus.NOT_AFFECTED, timestamp=NOW)
    with pytest.raises(InputError, match="requires an action_statement"):
        build_statement(vulnerability=CVE, products=[SYS_PURL], status=VexStatus.AFFECTED, timestamp=NOW)
    with pytest.raises(InputError, match="--product: not a package URL"):
        build_statement(vulnerability=CVE, products=["nope"], status=VexStatus.FIXED, timestamp=NOW)
    with pytest.raises(InputError, match="at least one product"):
        build_statement(vulnerability=CVE, products=[], status=VexStatus.FIXED, timestamp=NOW)
    with pytest.raises(InputError, match="--id: expected an IRI"):
        build_document([], author="a", timestamp=NOW, doc_id="no iri")


def _parsed(doc: dict[str, Any]) -> Any:
    return parse_vex(json.dumps(doc).encode(), source="d.json", now=NOW + timedelta(days=1))


def test_merge_latest_statement_per_product_and_vulnerability_wins() -> None:
    older = _parsed(_doc(VexStatus.UNDER_INVESTIGATION, at=NOW - timedelta(hours=2)))
    newer = _parsed(_doc(VexStatus.NOT_AFFECTED, at=NOW - timedelta(hours=1)))
    other = _parsed(_doc(VexStatus.AFFECTED, at=NOW - timedelta(hours=3), product="pkg:golang/golang.org/x/net@v0.1.0"))
    for order in ([older, newer, other], [newer, other, older]):
        merged = merge(order, author="merger", now=NOW)
        by_product = {s.products[0].purl(): s.status for s in merged.statements}
        assert by_product == {SYS_PURL: VexStatus.NOT_AFFECTED,
                              "pkg:golang/golang.org/x/net@v0.1.0": VexStatus.AFFECTED}
        assert _official_schema_errors(merged.document()) == []
    # the document timestamp stands in for a statement without one
    raw = _doc(VexStatus.FIXED, at=NOW)
    raw["statements"][0].pop("timestamp")
    assert effective_statements([older, _parsed(raw)])[(SYS_PURL, CVE)].status is VexStatus.FIXED


def test_merge_refuses_two_different_statements_at_the_same_instant() -> None:
    a = _parsed(_doc(VexStatus.NOT_AFFECTED, at=NOW - timedelta(hours=1)))
    b = _parsed(_doc(VexStatus.AFFECTED, at=NOW - timedelta(hours=1)))
    with pytest.raises(VexInvalidError, match="conflicting statements"):
        merge([a, b], author="m", now=NOW)
    assert len(merge([a, a], author="m", now=NOW).statements) == 1  # the same statement twice is fine


def test_purl_matching_follows_go_vex() -> None:
    component = PackageURL.from_string("pkg:golang/golang.org/x/sys@v0.38.0?goos=linux")
    assert purl_matches(PackageURL.from_string("pkg:golang/golang.org/x/sys"), component)
    assert purl_matches(PackageURL.from_string("pkg:golang/golang.org/x/sys@v0.38.0"), component)
    assert not purl_matches(PackageURL.from_string("pkg:golang/golang.org/x/sys@v0.37.0"), component)
    assert purl_matches(PackageURL.from_string("pkg:golang/golang.org/x/sys?goos=linux"), component)
    assert not purl_matches(PackageURL.from_string("pkg:golang/golang.org/x/sys?goos=darwin"), component)
    assert not purl_matches(PackageURL.from_string("pkg:golang/golang.org/x/net"), component)


def test_status_for_matches_aliases() -> None:
    doc = build_document([build_statement(vulnerability="GHSA-xxxx-yyyy-zzzz", aliases=[CVE], products=[SYS_PURL],
                                          status=VexStatus.FIXED, timestamp=NOW)], author="a", timestamp=NOW)
    found = status_for([doc], PackageURL.from_string(SYS_PURL), {CVE})
    assert found is not None and found.status is VexStatus.FIXED
    assert status_for([doc], PackageURL.from_string(SYS_PURL), {"CVE-2000-0001"}) is None


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_create_validate_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    at = NOW.isoformat()
    first, second, merged = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    code, result, _ = cli(capsys, "vex", "create", "--vuln", CVE, "--product", SYS_PURL, "--status",
                          "under_investigation", "--author", "sec", "--output", str(first), "--at", at, "--json")
    assert code == 0 and result is not None and result["status"] == "under_investigation"
    later = (NOW + timedelta(hours=1)).isoformat()
    code, _, _ = cli(capsys, "vex", "create", "-v", CVE, "-p", SYS_PURL, "-s", "not_affected", "-j",
                     "vulnerable_code_not_in_execute_path", "--author", "sec", "--output", str(second), "--at", later)
    assert code == 0
    code, result, _ = cli(capsys, "vex", "validate", str(second), "--at", later, "--json")
    assert code == 0 and result == {"valid": True, "id": json.loads(second.read_text())["@id"], "version": 1,
                                    "statements": 1}
    code, result, _ = cli(capsys, "vex", "merge", str(first), str(second), "--author", "sec", "--output",
                          str(merged), "--at", later, "--json")
    assert code == 0 and result is not None and result["statements"] == 1
    doc = json.loads(merged.read_text())
    assert doc["statements"][0]["status"] == "not_affected" and _official_schema_errors(doc) == []


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    at = NOW.isoformat()
    out = tmp_path / "a.json"
    code, _, err = cli(capsys, "vex", "create", "-v", CVE, "-p", SYS_PURL, "-s", "not_affected", "--author", "x",
                       "--output", str(out), "--at", at)
    assert code == 2 and "requires a justification or an impact_statement" in err and not out.exists()
    code, _, err = cli(capsys, "vex", "create", "-v", CVE, "-p", SYS_PURL, "-s", "broken", "--author", "x",
                       "--output", str(out), "--at", at)
    assert code == 2 and "--status: expected one of" in err
    code, _, err = cli(capsys, "vex", "create", "-v", CVE, "-p", SYS_PURL, "-s", "not_affected", "-j", "nah",
                       "--author", "x", "--output", str(out), "--at", at)
    assert code == 2 and "--justification: expected one of" in err
    code, _, err = cli(capsys, "vex", "create", "-v", CVE, "-p", SYS_PURL, "-s", "fixed", "--author", "x",
                       "--output", str(out), "--at", at, "--package", str(tmp_path))
    assert code == 2 and "--package and --trust-root go together" in err
    out.write_text("{}")
    code, _, err = cli(capsys, "vex", "create", "-v", CVE, "-p", SYS_PURL, "-s", "fixed", "--author", "x",
                       "--output", str(out), "--at", at)
    assert code == 2 and "exists; refusing to overwrite" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_mutated(lambda d: _st(d).pop("justification"))))
    code, _, err = cli(capsys, "vex", "validate", str(bad), "--at", at)
    assert code == 1 and "invalid: $.statements[0]: status not_affected requires" in err
    code, _, err = cli(capsys, "vex", "validate", str(tmp_path / "missing.json"), "--at", at)
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "vex", "merge", str(bad), "--author", "m", "--output", str(tmp_path / "m.json"))
    assert code == 1 and "error:" in err and not (tmp_path / "m.json").exists()
