"""`ringward kev check`: KEV match -> hold on the release's channels -> promotion blocked -> VEX
not_affected stored with the release -> released -> promotion passes (end to end through the CLI),
plus each matching rule and each refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringward.core.evidence.query import EvidenceQuery
from ringward.operations.advisories.kev_ops import KIND_CHECK, KIND_INCIDENT, KIND_RELEASED, import_catalog
from ringward.operations.incidents.incident_ops import KIND_OPENED, list_incidents
from ringward.operations.promotion.channel_ops import channels, hold_channel
from ringward.store.advisories.state import PUBLISHED_NAMESPACE, AdvisoryStateRepository
from tests.advisories.conftest import SYS_PURL, AdvisoryWorld, cli, kev_catalog, kev_entry, later
from tests.release.simulator import NOW

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
CVE = "CVE-2026-20001"
CHANNELS = ["beta", "canary", "stable"]


def _product_map(tmp_path: Path, affected: str | None = "<v0.39.0") -> Path:
    path = tmp_path / "kev-products.yaml"
    entry: dict[str, Any] = {"vendorProject": "golang", "product": "X/SYS", "purl": "pkg:golang/golang.org/x/sys"}
    if affected:
        entry["affected"] = affected
    path.write_text(yaml.safe_dump({"schema_version": "ringward.kev-product-map.v1", "products": [entry]}))
    return path


def _import(w: AdvisoryWorld, tmp_path: Path, entries: list[dict[str, Any]] | None = None) -> None:
    path = tmp_path / "kev.json"
    path.write_text(json.dumps(kev_catalog(entries=entries)))
    import_catalog(w.store, path, actor="secops", now=NOW)


def _check(w: AdvisoryWorld, capsys: pytest.CaptureFixture[str], *extra: str, at: float = 1.0
           ) -> tuple[int, dict[str, Any] | None, str]:
    return cli(capsys, "kev", "check", str(w.package), "--trust-root", str(w.trust_root), "--at",
               later(at).isoformat(), "--json", *extra)


def _request(w: AdvisoryWorld, capsys: pytest.CaptureFixture[str], at: float, out: str) -> tuple[int, str]:
    code, _, err = cli(capsys, "channel", "request-promotion", str(w.package), "--channel", "stable",
                       "--target-ring", "enterprise", "--requester", "alice", "--signing-key",
                       str(w.keys.promotion_pem), "--trust-root", str(w.trust_root), "--output", str(w.work / out),
                       "--at", later(at).isoformat(), "--json")
    return code, err


def _held(w: AdvisoryWorld) -> dict[str, str | None]:
    repo = channels(w.store)
    return {name: (state.hold.reason if state.hold else None) for name in CHANNELS
            for state in [repo.get(name)]}


def test_kev_match_holds_blocks_promotion_and_vex_releases(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps(kev_catalog()))
    assert cli(capsys, "kev", "import", str(kev), "--at", NOW.isoformat())[0] == 0
    products = _product_map(tmp_path)

    code, held, _ = _check(w, capsys, "--product-map", str(products))
    assert code == 1 and held is not None and held["held"] is True
    assert held["held_channels"] == CHANNELS
    (finding,) = held["findings"]
    assert (finding["component"], finding["vulnerability"], finding["rule"]) == (SYS_PURL, CVE, "product-map")
    assert all(r and "[ringward kev check]" in r for r in _held(w).values())
    incident = w.store.get_evidence(held["evidence_id"])
    assert incident.kind == KIND_INCIDENT and incident.payload["incident"]["type"] == "kev-match"
    assert incident.payload["incident"]["first_action_sla_hours"] == 4
    assert incident.payload["release_digest"].startswith("sha256:") and incident.payload["catalog_sha256"]
    # the hold opened a real incident through the incidents domain, in the same transaction
    (opened,) = incident.payload["incident"]["incidents"]
    assert opened["opened"] is True and opened["vulnerability"] == CVE
    (record,) = list_incidents(w.store)
    assert (record.incident_id, record.type.value, record.severity.value, record.state.value) == (
        opened["incident_id"], "kev-match", "critical", "open")
    assert record.links.cves == (CVE,) and record.links.packages == (held["release_digest"],)
    assert record.links.channels == tuple(CHANNELS)
    assert record.opened_at == later(1.0)
    (opened_record,) = w.store.search_evidence(EvidenceQuery(kind=KIND_OPENED, limit=10)).items
    assert opened_record.id == held["evidence_id"] + 1 and opened_record.payload["incident_id"] == record.incident_id

    code, err = _request(w, capsys, 1.1, "req-blocked")
    assert code == 1 and "held" in err and not (w.work / "req-blocked").exists()

    # re-checking while still exposed changes nothing and holds nothing twice
    code, again, _ = _check(w, capsys, "--product-map", str(products), at=1.15)
    assert code == 1 and again is not None and again["held_channels"] == [] and set(again["already_held"]) == set(
        CHANNELS)
    # ... and opens no second incident for the same (CVE, package digest)
    assert again["incident"]["incidents"][0] == {**opened, "opened": False}
    assert [i.incident_id for i in list_incidents(w.store)] == [record.incident_id]

    vex = tmp_path / "not-affected.json"
    code, stored, err = cli(capsys, "vex", "create", "--vuln", CVE, "--product", SYS_PURL, "--status", "not_affected",
                            "--justification", "vulnerable_code_not_in_execute_path", "--author", "security@acme",
                            "--output", str(vex), "--package", str(w.package), "--trust-root", str(w.trust_root),
                            "--at", later(1.2).isoformat(), "--json")
    assert code == 0 and stored is not None and stored["release"]["stored"] is True, err
    vex_record = w.store.get_evidence(stored["release"]["evidence_id"])
    assert vex_record.kind == "openvex-document"
    assert vex_record.payload["release_digest"] == held["release_digest"]

    code, cleared, _ = _check(w, capsys, "--product-map", str(products), at=1.3)
    assert code == 0 and cleared is not None and cleared["held"] is False
    assert cleared["released_channels"] == CHANNELS and cleared["findings"] == []
    assert cleared["resolved"][0]["vex_status"] == "not_affected"
    assert set(_held(w).values()) == {None}
    assert w.store.get_evidence(cleared["evidence_id"]).kind == KIND_RELEASED
    # the incident stays open (closing is a person's decision) with the VEX resolution in its history
    (noted,) = list_incidents(w.store)
    assert noted.state.value == "open" and noted.updates[-1].action == "update"
    assert "VEX not_affected resolves CVE-2026-20001" in (noted.updates[-1].note or "")
    assert w.store.get_evidence(cleared["evidence_id"]).payload["incidents_noted"] == [record.incident_id]
    assert w.store.get_evidence(cleared["evidence_id"] + 1).kind == "incident-updated"

    code, err = _request(w, capsys, 1.4, "req-ok")
    assert code == 0, err

    code, clear, _ = _check(w, capsys, "--product-map", str(products), at=1.5)
    assert code == 0 and clear is not None and clear["released_channels"] == []
    assert w.store.get_evidence(clear["evidence_id"]).kind == KIND_CHECK


@SQLITE_ONLY
def test_someone_elses_hold_is_never_lifted(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    _import(w, tmp_path)
    hold_channel(w.store, "stable", reason="CAB freeze for the holidays", actor="cab", now=later(0.9))
    code, held, _ = _check(w, capsys, "--product-map", str(_product_map(tmp_path)))
    assert code == 1 and held is not None
    assert held["held_channels"] == ["beta", "canary"] and held["already_held"] == {
        "stable": "CAB freeze for the holidays"}
    cli(capsys, "vex", "create", "-v", CVE, "-p", "pkg:golang/golang.org/x/sys", "-s", "fixed", "--author", "sec",
        "--output", str(tmp_path / "v.json"), "--package", str(w.package), "--trust-root", str(w.trust_root),
        "--at", later(1.2).isoformat())
    code, cleared, _ = _check(w, capsys, "--product-map", str(_product_map(tmp_path)), at=1.3)
    assert code == 0 and cleared is not None and cleared["released_channels"] == ["beta", "canary"]
    assert _held(w) == {"beta": None, "canary": None, "stable": "CAB freeze for the holidays"}


@SQLITE_ONLY
def test_published_advisory_rule_matches_without_a_product_map(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    _import(w, tmp_path, entries=[kev_entry("CVE-2026-30001")])
    AdvisoryStateRepository(w.store).decide([(PUBLISHED_NAMESPACE, "GO-2026-0001", {
        "advisory_id": "GO-2026-0001", "purl": "pkg:golang/golang.org/x/sys", "range": "vers:golang/<v0.40.0",
        "cves": ["CVE-2026-30001"], "severity": "high"}, 0), (PUBLISHED_NAMESPACE, "GO-2026-0002", {
        "advisory_id": "GO-2026-0002", "purl": "pkg:golang/golang.org/x/sys", "range": "vers:golang/<v0.30.0",
        "cves": ["CVE-2026-30002"], "severity": "high"}, 0), (PUBLISHED_NAMESPACE, "GO-2026-0003", {
        "advisory_id": "GO-2026-0003", "purl": "pkg:golang/golang.org/x/sys", "range": "vers:golang/>=v0.38.0",
        "cves": [], "severity": "medium"}, 0)], [], actor="t", now=NOW)
    code, held, _ = _check(w, capsys)
    assert code == 1 and held is not None
    found = {(f["vulnerability"], f["rule"], f["in_kev"]) for f in held["findings"]}
    # 0001: in KEV and in range; 0002: out of range; 0003: in range, not in KEV (an advisory finding)
    assert found == {("CVE-2026-30001", "advisory", True), ("GO-2026-0003", "advisory", False)}


@SQLITE_ONLY
def test_vex_affected_statement_names_the_component(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    _import(w, tmp_path)
    code, _, err = cli(capsys, "vex", "create", "-v", "GHSA-aaaa-bbbb-cccc", "--alias", CVE, "-p", SYS_PURL, "-s",
                       "affected", "-a", "Upgrade golang.org/x/sys to v0.39.0", "--author", "sec", "--output",
                       str(tmp_path / "affected.json"), "--package", str(w.package), "--trust-root",
                       str(w.trust_root), "--at", later(0.9).isoformat())
    assert code == 0, err
    code, held, _ = _check(w, capsys)
    assert code == 1 and held is not None and [f["rule"] for f in held["findings"]] == ["vex"]


@SQLITE_ONLY
def test_no_match_outside_the_mapped_range_and_no_catalog_refused(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    code, _, err = _check(w, capsys)
    assert code == 1 and "no KEV catalog imported" in err
    _import(w, tmp_path)
    code, clear, _ = _check(w, capsys, "--product-map", str(_product_map(tmp_path, "<v0.30.0")))
    assert code == 0 and clear is not None and clear["findings"] == [] and clear["held"] is False
    code, clear, _ = _check(w, capsys)  # no map: KEV names vendor/product only, nothing to match
    assert code == 0 and clear is not None and clear["findings"] == []
    bad_map = tmp_path / "bad.json"
    bad_map.write_text('{"schema_version": "ringward.kev-product-map.v1", "products": [{"purl": "x"}]}')
    code, _, err = _check(w, capsys, "--product-map", str(bad_map))
    assert code == 2 and "--product-map" in err


@SQLITE_ONLY
def test_vex_stored_with_a_release_must_speak_about_it(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    base = ["vex", "create", "-v", CVE, "-s", "fixed", "--author", "sec", "--package", str(w.package),
            "--trust-root", str(w.trust_root), "--at", later(0.9).isoformat(), "--id", "https://acme.example/vex/1"]
    code, _, err = cli(capsys, *base, "-p", "pkg:golang/golang.org/x/net@v0.1.0", "--output", str(tmp_path / "a"))
    assert code == 1 and "neither release 1.2.3 nor a component" in err and not (tmp_path / "a").exists()
    code, _, err = cli(capsys, *base, "-p", "pkg:github/acme/runtime@1.2.3", "--output", str(tmp_path / "b"))
    assert code == 0, err
    # the same @id and version with other content is refused; a higher version replaces it
    doc = json.loads((tmp_path / "b").read_text())
    doc["statements"][0]["status_notes"] = "re-checked"
    (tmp_path / "c").write_text(json.dumps(doc))
    validate = ["vex", "validate", str(tmp_path / "c"), "--package", str(w.package), "--trust-root",
                str(w.trust_root), "--at", later(1).isoformat()]
    code, _, err = cli(capsys, *validate)
    assert code == 1 and "needs a higher version" in err
    doc["version"] = 2
    (tmp_path / "c").write_text(json.dumps(doc))
    assert cli(capsys, *validate)[0] == 0
    code, result, _ = cli(capsys, *validate, "--json")
    assert code == 0 and result is not None and result["release"]["stored"] is False
    records = w.store.search_evidence(EvidenceQuery(kind="openvex-document", limit=10)).items
    assert [r.payload["vex_version"] for r in records] == [2, 1]


@SQLITE_ONLY
def test_recheck_finds_each_channels_current_release_and_holds_it(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.promotion.conftest import ChannelWorld

    w = advisory_world
    promoted = ChannelWorld(w.store, w.keys, w.sim, w.work, w.package)
    promoted.promote(channel="stable")
    assert channels(w.store).get("stable").current is not None
    _import(w, tmp_path)
    products = _product_map(tmp_path)
    base = ["kev", "recheck", "--trust-root", str(w.trust_root), "--product-map", str(products), "--at",
            later(1).isoformat(), "--json"]

    code, result, _ = cli(capsys, *base, "--packages", str(tmp_path / "keys"))
    assert code == 1 and result is not None and result["releases"] == []
    assert "no package with checksums digest sha256:" in result["unchecked"]["stable"]

    code, result, _ = cli(capsys, *base, "--packages", str(w.sim.root))
    assert code == 1 and result is not None and result["unchecked"] == {}
    (release,) = result["releases"]
    assert release["channels"] == ["stable"] and release["held"] is True
    assert release["held_channels"] == CHANNELS  # the manifest's channels, stable among them
    code, _, err = cli(capsys, *base[:2], "--packages", str(tmp_path / "nowhere"), "--trust-root", str(w.trust_root))
    assert code == 2 and "not a directory" in err


@SQLITE_ONLY
def test_latest_vex_statement_decides_and_a_refused_package_is_recorded(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = advisory_world
    _import(w, tmp_path)
    products = str(_product_map(tmp_path))
    base = ["vex", "create", "-v", CVE, "-p", SYS_PURL, "--author", "sec", "--package", str(w.package),
            "--trust-root", str(w.trust_root)]
    assert cli(capsys, *base, "-s", "not_affected", "-j", "component_not_present", "--output",
               str(tmp_path / "1.json"), "--at", later(0.8).isoformat())[0] == 0
    assert _check(w, capsys, "--product-map", products)[0] == 0
    # a later under_investigation statement supersedes the not_affected one: held again
    assert cli(capsys, *base, "-s", "under_investigation", "--output", str(tmp_path / "2.json"), "--at",
               later(1.1).isoformat())[0] == 0
    code, held, _ = _check(w, capsys, "--product-map", products, at=1.2)
    assert code == 1 and held is not None and held["held_channels"] == CHANNELS
    # a forged package is refused (exit 1) and the refusal recorded
    forged = w.sim.package("1.2.3", out="forged", key=w.sim.attacker_key)
    code, _, err = cli(capsys, "kev", "check", str(forged), "--trust-root", str(w.trust_root), "--at",
                       later(1.3).isoformat())
    assert code == 1 and "release package" in err
    refusals = [r for r in w.store.search_evidence(EvidenceQuery(kind=KIND_CHECK, limit=10)).items
                if r.payload.get("refused")]
    assert len(refusals) == 1 and refusals[0].payload["error"]["code"] == "untrusted-key"


@SQLITE_ONLY
def test_a_catalog_altered_in_the_store_is_refused_and_a_stale_one_warned(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ringward.store.advisories.state import KEV_KEY, KEV_NAMESPACE

    w = advisory_world
    _import(w, tmp_path)
    code, result, err = _check(w, capsys, at=24 * 10)
    assert code == 0 and result is not None and "day(s) old" in result["warnings"][0] and "warning:" in err
    entry = w.store.state.get(KEV_NAMESPACE, KEV_KEY)
    assert entry is not None
    value = dict(entry.value)
    value["entries"] = []  # someone deletes the KEV entries behind Ringward's back
    w.store.state.put(KEV_NAMESPACE, KEV_KEY, value, actor="intruder", now=NOW, expected_version=entry.version)
    code, _, err = _check(w, capsys)
    assert code == 1 and "was altered after import" in err


@SQLITE_ONLY
def test_kev_incident_is_reused_while_open_and_superseded_after_close(
    advisory_world: AdvisoryWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ringward.operations.incidents.incident_ops import acknowledge, close

    w = advisory_world
    _import(w, tmp_path)
    products = _product_map(tmp_path)
    code, held, _ = _check(w, capsys, "--product-map", str(products))
    assert code == 1 and held is not None
    (first,) = held["incident"]["incidents"]
    acknowledge(w.store, first["incident_id"], actor="bob", now=later(1.1))
    close(w.store, first["incident_id"], actor="bob", now=later(1.2), resolution="pinned; awaiting VEX")
    # still exposed after the close: the same (CVE, digest) opens a new generation, not a reopen
    code, again, _ = _check(w, capsys, "--product-map", str(products), at=1.3)
    assert code == 1 and again is not None
    (second,) = again["incident"]["incidents"]
    assert second["opened"] is True and second["incident_id"] != first["incident_id"]
    assert second["dedup_key"] == first["dedup_key"]
    records = {i.incident_id: i for i in list_incidents(w.store)}
    assert records[second["incident_id"]].supersedes == first["incident_id"]
    assert records[second["incident_id"]].generation == 2 and records[first["incident_id"]].state.value == "closed"
