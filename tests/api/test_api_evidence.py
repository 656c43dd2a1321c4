"""Evidence search/detail and governed artifact downloads (listing, verified bytes, attacks)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from datetime import timedelta

from ringward.core.evidence.records import EvidenceArtifact, EvidenceDraft, EvidenceSubject
from tests.api.conftest import T0, Api, add_bundle_record

FILES = {"managed-endpoint-rollout-evidence.json": b'{"ok": true}\n', "notes/summary.md": b"# fine\n"}


def test_search_detail_and_paging(api: Api) -> None:
    for i in range(7):
        api.store.append(
            EvidenceDraft(
                kind="rollout-promotion-execution",
                actor="bot",
                subject=EvidenceSubject(
                    status="succeeded" if i % 2 else "failed", deployment_target="win", ring="broad"
                ),
                payload={"i": i},
            ),
            now=T0 + timedelta(minutes=i),
        )
    page = api.get(
        "/evidence",
        params={"metadata_kind": "rollout-promotion-execution", "rollout_status": "succeeded", "limit": 2},
    ).json()
    assert [item["payload"]["i"] for item in page["items"]] == [5, 3]
    assert page["total"] == 3 and page["next_before_id"] is not None
    older = api.get(
        "/evidence",
        params={
            "metadata_kind": "rollout-promotion-execution",
            "rollout_status": "succeeded",
            "limit": 2,
            "before_id": page["next_before_id"],
        },
    ).json()
    assert [item["payload"]["i"] for item in older["items"]] == [1]
    windowed = api.get(
        "/evidence",
        params={
            "created_from": (T0 + timedelta(minutes=2)).isoformat(),
            "created_to": (T0 + timedelta(minutes=4)).isoformat(),
            "metadata_kind": "rollout-promotion-execution",
        },
    ).json()
    assert [item["payload"]["i"] for item in windowed["items"]] == [3, 2]
    inverted = api.get(
        "/evidence", params={"created_from": "2026-02-01T00:00:00Z", "created_to": "2026-01-01T00:00:00Z"}
    ).json()
    assert inverted["items"] == [] and inverted["total"] == 0
    first_id = page["items"][0]["id"]
    detail = api.get(f"/evidence/{first_id}").json()
    assert detail["record_hash"] == page["items"][0]["record_hash"]
    assert detail["created_at"].endswith("Z")
    missing = api.get("/evidence/999999")
    assert missing.status_code == 404 and missing.json()["error"] == "evidence-not-found"


def test_bad_search_parameters_are_4xx(api: Api) -> None:
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"before_id": 0},
        {"success": "maybe"},
        {"created_from": "yesterday"},
        {"created_from": "2026-01-01T00:00:00"},  # no offset
        {"metadata_kind": "x\x00y"},
        {"order": "random"},
        {"metadata_kind": "k" * 300},
    ):
        response = api.get("/evidence", params=params)
        assert 400 <= response.status_code < 500, (params, response.status_code, response.text)
        assert set(response.json()) == {"error", "message"}


def test_artifact_listing_and_verified_download(api: Api) -> None:
    record = add_bundle_record(api.store, api.root, "rollouts/r1", FILES)
    listing = api.get(f"/evidence/{record.id}/artifacts").json()
    assert listing["schema_version"] == "ringward.evidence.artifacts.v1"
    assert listing["integrity"] == "verified" and listing["download_readiness"] == "ready"
    assert {a["artifact"]: a["status"] for a in listing["artifacts"]} == dict.fromkeys(FILES, "verified")
    for name, data in FILES.items():
        response = api.get(f"/evidence/{record.id}/artifacts/{name}")
        assert response.status_code == 200 and response.content == data
        assert response.headers["x-ringward-artifact-sha256"] == hashlib.sha256(data).hexdigest()
        assert response.headers["content-disposition"].startswith("attachment;")
    checksums = api.get(f"/evidence/{record.id}/artifacts/checksums.txt")
    assert checksums.status_code == 200 and checksums.content.count(b"\n") == 2
    bundle = api.get(f"/evidence/{record.id}/artifact-bundle")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    assert bundle.headers["x-ringward-artifact-sha256"] == hashlib.sha256(bundle.content).hexdigest()
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"evidence-{record.id}/{n}" for n in [*FILES, "checksums.txt"])
        assert archive.read(f"evidence-{record.id}/notes/summary.md") == FILES["notes/summary.md"]


def test_viewer_downloads_but_records_without_bundles_have_nothing(api: Api) -> None:
    plain = api.store.append(EvidenceDraft(kind="k", actor="a", payload={}))
    listing = api.get(f"/evidence/{plain.id}/artifacts").json()
    assert listing["artifact_count"] == 0 and listing["integrity"] == "none"
    assert api.get(f"/evidence/{plain.id}/artifacts/anything").status_code == 404
    assert api.get(f"/evidence/{plain.id}/artifact-bundle").status_code == 404


def test_tampered_file_is_never_served(api: Api) -> None:
    record = add_bundle_record(api.store, api.root, "rollouts/r2", FILES)
    (api.root / "rollouts/r2/notes/summary.md").write_bytes(b"# evil\n")
    response = api.get(f"/evidence/{record.id}/artifacts/notes/summary.md")
    assert response.status_code == 409 and response.json()["error"] == "artifact-mismatch"
    assert b"evil" not in response.content
    listing = api.get(f"/evidence/{record.id}/artifacts").json()
    assert listing["integrity"] == "failed" and listing["download_readiness"] == "blocked"
    assert api.get(f"/evidence/{record.id}/artifact-bundle").status_code == 409
    # the untouched file still downloads
    assert api.get(f"/evidence/{record.id}/artifacts/managed-endpoint-rollout-evidence.json").status_code == 200


def test_tampered_checksums_file_is_refused(api: Api) -> None:
    record = add_bundle_record(api.store, api.root, "rollouts/r3", FILES)
    (api.root / "rollouts/r3/checksums.txt").write_text("0" * 64 + "  notes/summary.md\n")
    assert api.get(f"/evidence/{record.id}/artifacts/checksums.txt").status_code == 409
    assert api.get(f"/evidence/{record.id}/artifacts").json()["integrity"] == "failed"


def test_missing_file_is_404_and_listing_incomplete(api: Api) -> None:
    record = add_bundle_record(api.store, api.root, "rollouts/r4", FILES)
    os.unlink(api.root / "rollouts/r4/notes/summary.md")
    response = api.get(f"/evidence/{record.id}/artifacts/notes/summary.md")
    assert response.status_code == 404 and response.json()["error"] == "artifact-missing"
    assert api.get(f"/evidence/{record.id}/artifacts").json()["integrity"] == "incomplete"


def test_path_traversal_on_artifact_routes(api: Api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP SECRET")
    record = add_bundle_record(api.store, api.root, "rollouts/r5", FILES)
    for name in (
        "../../secret.txt",
        "..%2F..%2Fsecret.txt",
        "%2e%2e/%2e%2e/secret.txt",
        "/etc/passwd",
        "notes/../../../secret.txt",
        "notes%2f..%2f..%2fchecksums.txt",
        "not-listed.json",
        "NOTES/SUMMARY.MD",
    ):
        response = api.get(f"/evidence/{record.id}/artifacts/{name}")
        assert response.status_code in (404, 422), (name, response.status_code)
        assert b"TOP SECRET" not in response.content


def test_symlinked_artifact_pointing_outside_is_refused(api: Api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside.json"
    outside.write_bytes(b'{"ok": true}\n')  # same bytes and digest as the listed artifact
    record = add_bundle_record(api.store, api.root, "rollouts/r6", FILES)
    target = api.root / "rollouts/r6/managed-endpoint-rollout-evidence.json"
    target.unlink()
    target.symlink_to(outside)
    response = api.get(f"/evidence/{record.id}/artifacts/managed-endpoint-rollout-evidence.json")
    assert response.status_code == 409 and response.json()["error"] == "artifact-unsafe"


def test_bundle_directory_resolving_outside_the_root_is_refused(api: Api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = b"outside the root"
    (elsewhere / "f.txt").write_bytes(data)
    (elsewhere / "checksums.txt").write_text(f"{hashlib.sha256(data).hexdigest()}  f.txt\n")
    (api.root / "linked").symlink_to(elsewhere)
    record = api.store.append(
        EvidenceDraft(
            kind="k",
            actor="a",
            payload={},
            bundle_dir="linked",
            artifacts=(EvidenceArtifact(name="f.txt", sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)),),
        )
    )
    response = api.get(f"/evidence/{record.id}/artifacts/f.txt")
    assert response.status_code == 409 and response.json()["error"] == "artifact-unsafe"
    assert b"outside the root" not in response.content
    assert api.get(f"/evidence/{record.id}/artifacts").json()["download_readiness"] == "blocked"
