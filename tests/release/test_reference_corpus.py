"""The reference-package generator writes what cavra-spec §2 describes, quirks included, and the
default (Ringward) profile refuses those packages for exactly the reasons issue 11 lists."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.release.reference_packages import (
    EVIDENCE_MD,
    STORED_CI_CONTROLS,
    VERIFIER_CI_CONTROLS,
    ReferenceGenerator,
    load,
    zip_package,
)
from tests.release.simulator import NOW, ReleaseSimulator, codes, family, trusted


@pytest.fixture
def gen(tmp_path: Path) -> ReferenceGenerator:
    return ReferenceGenerator(tmp_path)


def pinned(sim: ReleaseSimulator, gen: ReferenceGenerator):
    return sim.trust_root(trusted(gen.key, "cavra-release"))


def test_layout_names_and_unsigned_files(gen: ReferenceGenerator) -> None:
    pkg = gen.package("v1.2.5")
    assert pkg.name == "go-runtime-v1.2.5"
    assert (pkg / "bin" / "cavra-runtime_v1.2.5_linux_amd64").is_file()
    assert (pkg / "bin" / "cavra-runtime_v1.2.5_windows_arm64.exe").is_file()
    listed = [line.split("  ", 1)[1] for line in (pkg / "checksums.txt").read_text().splitlines()]
    # §2.0 "Consequence": the evidence, the markdown and every signature are outside checksums.txt
    assert "release-evidence.json" not in listed and EVIDENCE_MD not in listed
    assert not any(name.endswith(".sig.json") for name in listed)
    assert listed[-1] == "cavra-runtime.provenance.intoto.json"
    assert (pkg / "release-evidence.json.sig.json").is_file()
    assert not (pkg / f"{EVIDENCE_MD}.sig.json").exists()
    evidence = load(pkg, "release-evidence.json")
    assert evidence["product"] == "CAVRA" and evidence["version"] == "v1.2.5"
    assert [a["kind"] for a in evidence["artifacts"]][-2:] == ["slsa-provenance", "checksums"]
    assert evidence["signature_count"] == len(listed) + 1


def test_quirky_fields(gen: ReferenceGenerator) -> None:
    pkg = gen.package("v1.2.5")
    created = load(pkg, "cavra-runtime.sbom.spdx.json")["creationInfo"]["created"]
    assert created.endswith("+00:00") and "." in created  # datetime.isoformat(), microseconds
    assert datetime.fromisoformat(created).microsecond == 123456
    sbom = load(pkg, "cavra-runtime.sbom.spdx.json")
    assert not any(r["relationshipType"] == "DESCRIBES" for r in sbom["relationships"])
    assert not any(p["name"].startswith("cavra-runtime_") for p in sbom["packages"])  # no per-binary packages
    bootstrap = load(pkg, "offline-trust-root-bootstrap.json")
    assert "generated_at" not in bootstrap and "trusted_keys" not in bootstrap
    assert bootstrap["signature_key_id"] == "cavra-go-release-v1.2.5"
    assert load(pkg, "cavra-runtime.ci-runner-bundles.json")["controls"] == list(STORED_CI_CONTROLS)
    newer = gen.package("v1.2.6", ci_controls="verifier")
    assert load(newer, "cavra-runtime.ci-runner-bundles.json")["controls"] == list(VERIFIER_CI_CONTROLS)
    assert (pkg / "checksums.txt").read_text().endswith("\n")
    assert load(pkg, "cavra-runtime.installers.json")["generated_at"] == created


def test_signatures_are_reference_signatures_over_raw_bytes(gen: ReferenceGenerator) -> None:
    pkg = gen.package("1.2.5")
    sig = load(pkg, "checksums.txt.sig.json")
    assert set(sig) == {"schema_version", "subject", "subject_sha256", "algorithm", "key_id", "signer",
                        "public_key_sha256", "public_key_pem", "value"}
    assert sig["schema_version"] == "cavra.go-release.signature.v1" and sig["key_id"] == "cavra-go-release-1.2.5"
    assert sig["public_key_sha256"] == hashlib.sha256(sig["public_key_pem"].encode()).hexdigest()
    public = load_pem_public_key(sig["public_key_pem"].encode())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(sig["value"]), (pkg / "checksums.txt").read_bytes())


def test_dry_run_writes_the_notice_and_no_signature(gen: ReferenceGenerator) -> None:
    pkg = gen.package("1.2.5", signed=False, dry_run=True)
    assert load(pkg, "unsigned-dry-run-notice.json") == {
        "schema_version": "cavra.go-release.unsigned-notice.v1",
        "reason": "CAVRA_GO_RELEASE_SIGNING_KEY was not provided", "dry_run": True}
    assert not list(pkg.rglob("*.sig.json"))
    assert "No signing key was provided" in (pkg / EVIDENCE_MD).read_text()


def test_zip_has_one_go_runtime_folder(gen: ReferenceGenerator) -> None:
    pkg = gen.package("v1.2.5")
    archive = zip_package(pkg)
    assert archive.name == "cavra-go-runtime-v1.2.5.zip"
    with zipfile.ZipFile(archive) as z:
        assert {n.split("/", 1)[0] for n in z.namelist()} == {"go-runtime-v1.2.5"}


def test_default_profile_refuses_every_quirk(sim: ReleaseSimulator, gen: ReferenceGenerator) -> None:
    """The five reasons of issue 11, each visible on a package that has only that quirk left."""
    root = pinned(sim, gen)
    result = sim.verify(gen.package("1.2.5", out="plain"), root, now=NOW)
    assert not result.valid
    found = codes(result)
    assert "signature-missing" in found  # release-evidence.md is unsigned
    assert family(result, "ci-runner-bundles").errors[0].code == "metadata-mismatch"  # 5 controls
    assert family(result, "sbom").errors[0].code == "sbom-invalid"  # isoformat timestamp
    assert family(result, "offline-bootstrap").errors[0].code == "malformed-document"  # no generated_at
    assert "generated_at" in family(result, "offline-bootstrap").errors[0].message


def test_re_signed_tampered_reference_package_is_untrusted(sim: ReleaseSimulator, gen: ReferenceGenerator) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.release.reference_packages import reseal

    pkg = gen.package("1.2.5")
    binary = pkg / "bin" / "cavra-runtime_1.2.5_linux_amd64"
    binary.write_bytes(binary.read_bytes() + b"# planted\n")
    reseal(pkg, Ed25519PrivateKey.generate())
    assert "untrusted-key" in codes(sim.verify(pkg, pinned(sim, gen), now=NOW))


def test_generator_is_independent_of_the_ringward_builder() -> None:
    source = Path(__file__).with_name("reference_packages.py").read_text()
    assert "from ringward" not in source and "import ringward" not in source
