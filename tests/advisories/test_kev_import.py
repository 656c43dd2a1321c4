"""`ringward kev import`: the catalog is schema-checked against the vendored CISA schema, its
digest and catalogVersion recorded as evidence, and an older catalog never replaces a newer one
(compare-and-set on the stored row)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.advisories.kev import KevCatalogError, parse_catalog, parse_product_map
from ringward.core.errors import InputError, RollbackError, StoreConflictError, VersionConflictError
from ringward.core.evidence.query import EvidenceQuery
from ringward.operations.advisories.kev_ops import KIND_IMPORT, import_catalog
from ringward.store import Store
from ringward.store.advisories.state import KEV_KEY, KEV_NAMESPACE, AdvisoryStateRepository
from tests.advisories.conftest import cli, kev_catalog, kev_entry
from tests.release.simulator import NOW


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


def _records(store: Store, kind: str = KIND_IMPORT) -> list[Any]:
    return list(store.search_evidence(EvidenceQuery(kind=kind, limit=50, order="oldest")).items)


def test_import_records_digest_and_version(promotion_store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "kev.json", kev_catalog())
    result = import_catalog(promotion_store, path, actor="secops", now=NOW)
    assert result["imported"] is True and result["catalog_version"] == "2026.11.20" and result["count"] == 1
    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    (record,) = _records(promotion_store)
    assert record.payload["sha256"] == result["sha256"] and record.payload["catalog_version"] == "2026.11.20"
    assert record.payload["previous"] is None and record.payload["warnings"] == []
    stored = AdvisoryStateRepository(promotion_store).kev_catalog()
    assert stored is not None and stored.value["entries"][0]["cveID"] == "CVE-2026-20001"


def test_older_catalog_never_replaces_a_newer_one(promotion_store: Store, tmp_path: Path) -> None:
    newer = _write(tmp_path / "new.json", kev_catalog("2026.11.20", NOW - timedelta(days=1)))
    older = _write(tmp_path / "old.json", kev_catalog("2026.11.10", NOW - timedelta(days=11),
                                                      entries=[kev_entry("CVE-2020-0001")]))
    import_catalog(promotion_store, newer, actor="secops", now=NOW)
    with pytest.raises(RollbackError, match=r"older than the stored 2026\.11\.20"):
        import_catalog(promotion_store, older, actor="secops", now=NOW)
    stored = AdvisoryStateRepository(promotion_store).kev_catalog()
    assert stored is not None and stored.value["catalog_version"] == "2026.11.20" and stored.version == 1
    imports = _records(promotion_store)
    assert [r.payload.get("refused", False) for r in imports] == [False, True]
    assert imports[1].payload["error"]["code"] == "rollback-rejected"
    # a newer one replaces it, naming what it replaced
    newest = _write(tmp_path / "newest.json", kev_catalog("2026.11.27", NOW))
    result = import_catalog(promotion_store, newest, actor="secops", now=NOW)
    assert result["previous"]["catalog_version"] == "2026.11.20"


def test_same_catalog_is_a_no_op_and_same_version_other_bytes_conflicts(promotion_store: Store,
                                                                       tmp_path: Path) -> None:
    first = _write(tmp_path / "a.json", kev_catalog())
    import_catalog(promotion_store, first, actor="secops", now=NOW)
    again = import_catalog(promotion_store, first, actor="secops", now=NOW)
    assert again["imported"] is False and len(_records(promotion_store)) == 1
    changed = _write(tmp_path / "b.json", kev_catalog(entries=[kev_entry("CVE-2026-30003")]))
    with pytest.raises(VersionConflictError, match="other bytes"):
        import_catalog(promotion_store, changed, actor="secops", now=NOW)


def test_compare_and_set_loses_to_a_concurrent_import(promotion_store: Store) -> None:
    repo = AdvisoryStateRepository(promotion_store)
    repo.decide([(KEV_NAMESPACE, KEV_KEY, {"x": 1}, 0)], [], actor="a", now=NOW)
    with pytest.raises(StoreConflictError, match="expected version 0, found 1"):
        repo.decide([(KEV_NAMESPACE, KEV_KEY, {"x": 2}, 0)], [], actor="b", now=NOW)
    entry = repo.kev_catalog()
    assert entry is not None and entry.value == {"x": 1}


def test_stale_catalog_warns(promotion_store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "kev.json", kev_catalog(released=NOW - timedelta(days=30)))
    result = import_catalog(promotion_store, path, actor="secops", now=NOW)
    assert result["imported"] and "30 day(s) old" in result["warnings"][0]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.pop("catalogVersion"), "'catalogVersion' is a required property"),
    (lambda d: d["vulnerabilities"][0].update(cveID="CVE-26-1"), "does not match"),
    (lambda d: d["vulnerabilities"][0].pop("requiredAction"), "'requiredAction' is a required property"),
    (lambda d: d["vulnerabilities"][0].update(dateAdded="2026-02-31"), "is not a 'date'"),
    (lambda d: d.update(dateReleased="yesterday"), "is not a 'date-time'"),
    (lambda d: d.update(count=2), "count says 2 entries, the catalog lists 1"),
    (lambda d: d["vulnerabilities"].append(dict(d["vulnerabilities"][0])) or d.update(count=2), "listed twice"),
    (lambda d: d.update(catalogVersion="v7"), "catalogVersion expected YYYY.MM.DD"),
    (lambda d: d["vulnerabilities"][0].update(cwes=["787"]), "does not match"),
])
def test_invalid_catalogs_are_refused(change: Any, expected: str) -> None:
    doc = kev_catalog()
    change(doc)
    with pytest.raises(KevCatalogError) as caught:
        parse_catalog(json.dumps(doc).encode(), source="kev.json")
    assert expected in caught.value.message or any(expected in p for p in caught.value.problems)


def test_not_json_is_refused() -> None:
    with pytest.raises(KevCatalogError):
        parse_catalog(b'{"count": 1, "count": 2}', source="kev.json")


def test_product_map_is_validated() -> None:
    good = {"schema_version": "ringward.kev-product-map.v1",
            "products": [{"vendorProject": "Golang", "product": "x/sys", "purl": "pkg:golang/golang.org/x/sys",
                          "affected": "<v0.39.0"}]}
    assert parse_product_map(good, source="m").products[0].product == "x/sys"
    for bad, expected in (({**good, "schema_version": "v2"}, "schema_version"),
                          ({**good, "products": [{**good["products"][0], "purl": "x"}]}, "not a package URL"),
                          ({**good, "products": [{**good["products"][0], "affected": "<bogus"}]}, "invalid version"),
                          ({**good, "extra": 1}, "extra")):
        with pytest.raises(InputError, match=expected):
            parse_product_map(bad, source="m")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_import_exit_codes(promotion_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    newer = _write(tmp_path / "new.json", kev_catalog("2026.11.20", NOW - timedelta(days=1)))
    older = _write(tmp_path / "old.json", kev_catalog("2026.11.10", NOW - timedelta(days=11)))
    at = NOW.isoformat()
    code, result, _ = cli(capsys, "kev", "import", str(newer), "--at", at, "--json")
    assert code == 0 and result is not None and result["imported"] is True
    code, _, err = cli(capsys, "kev", "import", str(older), "--at", at)
    assert code == 1 and "an older catalog never replaces a newer one" in err
    bad = _write(tmp_path / "bad.json", {**kev_catalog(), "count": "many"})
    code, _, err = cli(capsys, "kev", "import", str(bad), "--at", at)
    assert code == 1 and "not a KEV catalog" in err
    code, _, err = cli(capsys, "kev", "import", str(tmp_path / "absent.json"), "--at", at)
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "kev", "import", str(newer), "--max-age-days", "0")
    assert code == 2 and "--max-age-days" in err
