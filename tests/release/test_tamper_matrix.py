"""Tamper matrix (supply-chain-anchors §7.2): each row mutates one thing and asserts the
specific error. Row numbers refer to that table."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ringward.core.common.checksums import parse_checksums, render_checksums
from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import ConfigError, KeyMaterialError
from ringward.core.trust.keys import load_public_key_raw, public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustRoot, parse_trust_root
from tests.release.simulator import NOW, ReleaseSimulator, codes, family, timedelta, trusted

BIN = "bin/rt_1.2.3_linux_amd64"
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def test_row35_untouched_release_passes(sim: ReleaseSimulator, pkg: Path) -> None:
    result = sim.verify(pkg)
    assert result.valid, result.errors
    assert result.version == "1.2.3" and result.runtime == "rt"
    assert {f.family for f in result.families} >= {"integrity-and-signatures", "provenance", "sbom", "installers"}
    assert family(result, "ci-runner-bundles").status == "skipped"
    assert public_key_of(sim.key).key_id in result.signers


def test_row1_flipped_bit_is_a_digest_mismatch(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.flip_bit(pkg / BIN)
    result = sim.verify(pkg)
    assert not result.valid
    assert "digest-mismatch" in codes(result)
    assert any(BIN in e.message for e in result.errors if e.code == "digest-mismatch")


@pytest.mark.parametrize("change", [lambda b: b[:-1], lambda b: b + b"\x00"], ids=["truncate", "append"])
def test_row2_size_change_detected_before_hashing(sim: ReleaseSimulator, pkg: Path, change) -> None:
    (pkg / BIN).write_bytes(change((pkg / BIN).read_bytes()))
    result = sim.verify(pkg)
    assert "size-mismatch" in codes(result)
    assert "digest-mismatch" not in codes(result)


def test_row3_checksums_edited_to_match_tampered_artifact(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.flip_bit(pkg / BIN)
    digests = parse_checksums((pkg / "checksums.txt").read_bytes()).as_dict()
    digests[BIN] = hashlib.sha256((pkg / BIN).read_bytes()).hexdigest()
    (pkg / "checksums.txt").write_bytes(render_checksums(digests))
    result = sim.verify(pkg)
    assert codes(result) == {"signature-invalid"}
    assert "checksums.txt" in result.errors[0].message
    assert family(result, "installers").status == "skipped"  # nothing parsed from an unverified manifest


def _sig(pkg: Path, name: str) -> dict:
    return json.loads((pkg / f"{name}.sig.json").read_bytes())


def _put_sig(pkg: Path, name: str, sig: dict) -> None:
    (pkg / f"{name}.sig.json").write_bytes(dumps_document(sig))


def test_row4_removed_signature(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / f"{BIN}.sig.json").unlink()
    assert "signature-missing" in codes(sim.verify(pkg))


@pytest.mark.parametrize(
    "value",
    [
        "",
        base64.b64encode(b"\x01" * 63).decode(),
        base64.b64encode(b"\x01" * 65).decode(),
        "not*base64!",
    ],
    ids=["empty", "63-bytes", "65-bytes", "non-base64"],
)
def test_row4_malformed_signature_value(sim: ReleaseSimulator, pkg: Path, value: str) -> None:
    sig = _sig(pkg, BIN)
    sig["value"] = value
    _put_sig(pkg, BIN, sig)
    assert "signature-malformed" in codes(sim.verify(pkg))


def test_row4_empty_signature_file(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / f"{BIN}.sig.json").write_bytes(b"")
    assert "malformed-document" in codes(sim.verify(pkg))


def test_row5_package_resigned_with_another_key_fails(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.flip_bit(pkg / BIN)
    digests = parse_checksums((pkg / "checksums.txt").read_bytes()).as_dict()
    digests[BIN] = hashlib.sha256((pkg / BIN).read_bytes()).hexdigest()
    (pkg / "checksums.txt").write_bytes(render_checksums(digests))
    sim.resign_everything(pkg, sim.attacker_key)
    result = sim.verify(pkg)
    assert not result.valid
    assert "untrusted-key" in codes(result)
    assert "unpinned key" in result.errors[0].message


def test_row5_whole_release_signed_by_unpinned_key(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", key=sim.attacker_key)
    result = sim.verify(pkg)
    assert codes(result) == {"untrusted-key"}


def test_row6_key_id_hint_spoofed_to_trusted_key(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.sign_file(pkg, "checksums.txt", sim.attacker_key)
    sig = _sig(pkg, "checksums.txt")
    trusted_pub = public_key_of(sim.key)
    sig["key_id"] = trusted_pub.key_id
    sig["public_key_sha256"] = trusted_pub.pem_sha256
    _put_sig(pkg, "checksums.txt", sig)
    result = sim.verify(pkg)
    assert codes(result) == {"untrusted-key"}


def test_row6_trusted_pem_as_hint_with_attacker_signature(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.sign_file(pkg, "checksums.txt", sim.attacker_key)
    sig = _sig(pkg, "checksums.txt")
    trusted_pub = public_key_of(sim.key)
    sig["public_key_pem"] = trusted_pub.pem
    sig["public_key_sha256"] = trusted_pub.pem_sha256
    _put_sig(pkg, "checksums.txt", sig)
    assert codes(sim.verify(pkg)) == {"signature-invalid"}


def test_row7_duplicated_signature_does_not_meet_threshold_two(sim: ReleaseSimulator, pkg: Path) -> None:
    root = sim.trust_root(trusted(sim.key, "a"), trusted(sim.second_key, "b"), threshold=2)
    same = public_key_of(sim.key).key_id[:16]
    for sig in list(pkg.rglob("*.sig.json")):  # the same key's signature duplicated as a co-signature
        shutil.copy(sig, sig.with_name(sig.name.replace(".sig.json", f".{same}.sig.json")))
    result = sim.verify(pkg, root)
    assert codes(result) == {"threshold-not-met"}
    assert "1 distinct trusted release key" in result.errors[0].message
    other = public_key_of(sim.second_key).key_id[:16]
    for sig in list(pkg.rglob(f"*.{same}.sig.json")):  # ...or relabelled as the other key's
        sig.rename(sig.with_name(sig.name.replace(same, other)))
    assert codes(sim.verify(pkg, root)) == {"signature-invalid"}


def test_row7_same_key_under_two_ids_is_rejected_at_load(sim: ReleaseSimulator) -> None:
    entry = trusted(sim.key, "a")
    data = TrustRoot(updated_at=NOW, keys=(entry,)).model_dump(mode="json")
    data["keys"].append({**data["keys"][0], "label": "b"})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_trust_root(json.dumps(data).encode(), source="trust-root.json")


def test_row35_threshold_two_met_by_two_distinct_keys(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", extra_keys=(sim.second_key,))
    root = sim.trust_root(trusted(sim.key, "a"), trusted(sim.second_key, "b"), threshold=2)
    assert sim.verify(pkg, root).valid
    only_one = sim.package("1.2.3", out="single")
    assert "threshold-not-met" in codes(sim.verify(only_one, root))


def test_row8_small_order_identity_key_rejected_at_load(sim: ReleaseSimulator) -> None:
    identity = b"\x01" + b"\x00" * 31
    with pytest.raises(KeyMaterialError, match="small-order"):
        load_public_key_raw(identity, source="test")
    data = TrustRoot(updated_at=NOW, keys=(trusted(sim.key, "a"),)).model_dump(mode="json")
    # an identity-point key smuggled into the trust root file
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pem = Ed25519PublicKey.from_public_bytes(identity).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    data["keys"][0].update(public_key_pem=pem, key_id=hashlib.sha256(identity).hexdigest(),
                           public_key_sha256=hashlib.sha256(pem.encode()).hexdigest())
    with pytest.raises(ConfigError, match="small-order"):
        parse_trust_root(json.dumps(data).encode(), source="trust-root.json")


def test_row9_non_canonical_signature_rejected(sim: ReleaseSimulator, pkg: Path) -> None:
    sig = _sig(pkg, "checksums.txt")
    raw = base64.b64decode(sig["value"])
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    sig["value"] = base64.b64encode(raw[:32] + s.to_bytes(32, "little")).decode()
    _put_sig(pkg, "checksums.txt", sig)
    assert codes(sim.verify(pkg)) == {"signature-invalid"}


def test_row10_unlisted_file(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / "bin" / "rt").write_bytes(b"#!/bin/sh\nplanted\n")
    result = sim.verify(pkg)
    assert codes(result) == {"unlisted-file"}
    assert "bin/rt" in result.errors[0].message


def test_row10_signature_for_unlisted_subject(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / "extra.txt").write_bytes(b"x")
    sim.sign_file(pkg, "extra.txt")
    assert codes(sim.verify(pkg)) == {"unlisted-file"}


def test_row11_listed_file_missing(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / BIN).unlink()
    result = sim.verify(pkg)
    assert "missing-file" in codes(result)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda t: t + t.splitlines(keepends=True)[0].replace("  ", "  ", 1), "malformed-manifest"),
        (lambda t: t.replace("  bin/", "  ../bin/", 1), "malformed-manifest"),
        (lambda t: t.replace("  bin/", "  /bin/", 1), "malformed-manifest"),
        (lambda t: t.replace("  bin/rt_1.2.3_linux_amd64", "  bin\\rt_1.2.3_linux_amd64", 1), "malformed-manifest"),
        (lambda t: t.replace("\n", " \n", 1), "malformed-manifest"),
        (lambda t: t.replace("\n", "\r\n"), "malformed-manifest"),
        (lambda t: t[:10].upper() + t[10:], "malformed-manifest"),
        (lambda t: t.replace("  ", " *", 1), "malformed-manifest"),
        (lambda t: "\ufeff" + t, "malformed-manifest"),
        (lambda t: t[:40] + t[64:], "weak-digest"),
        (lambda t: t.rstrip("\n"), "malformed-manifest"),
        (lambda t: t + "\n", "malformed-manifest"),
    ],
    ids=["duplicate", "dotdot", "absolute", "backslash", "trailing-space", "crlf", "uppercase", "star",
         "bom", "sha1", "no-final-newline", "blank-line"],
)
def test_row12_malformed_manifest_even_when_validly_signed(sim: ReleaseSimulator, pkg: Path, mutate, code) -> None:
    text = (pkg / "checksums.txt").read_text()
    (pkg / "checksums.txt").write_bytes(mutate(text).encode("utf-8"))
    sim.sign_file(pkg, "checksums.txt")
    result = sim.verify(pkg)
    assert code in codes(result)
    assert not result.valid


def test_row13_manifest_from_previous_release_is_a_binding_mismatch(sim: ReleaseSimulator, pkg: Path) -> None:
    old = sim.package("1.2.2", out="old")
    for name in ("checksums.txt", "checksums.txt.sig.json"):
        shutil.copy(old / name, pkg / name)
    result = sim.verify(pkg)
    assert not result.valid
    assert "binding-mismatch" in codes(result)


def test_row16_statement_with_duplicate_key(sim: ReleaseSimulator, pkg: Path) -> None:
    name = "rt.provenance.intoto.json"
    text = (pkg / name).read_text()
    duplicated = text.replace('"subject": [', '"subject": [], "subject": [', 1)
    sim.rewrite(pkg, name, duplicated.encode())
    result = sim.verify(pkg)
    assert family(result, "provenance").errors[0].code == "malformed-document"
    assert "duplicate key" in family(result, "provenance").errors[0].message


@pytest.mark.parametrize("suffix", [b"\n{}", b" garbage"], ids=["second-document", "trailing-bytes"])
def test_row16_statement_with_trailing_data(sim: ReleaseSimulator, pkg: Path, suffix: bytes) -> None:
    name = "rt.provenance.intoto.json"
    sim.rewrite(pkg, name, (pkg / name).read_bytes() + suffix)
    assert family(sim.verify(pkg), "provenance").errors[0].code == "malformed-document"


def test_row16_statement_with_nan(sim: ReleaseSimulator, pkg: Path) -> None:
    name = "rt.provenance.intoto.json"
    text = (pkg / name).read_text().replace('"dry_run": false', '"dry_run": NaN', 1)
    sim.rewrite(pkg, name, text.encode())
    assert "non-finite" in family(sim.verify(pkg), "provenance").errors[0].message


@pytest.mark.parametrize(
    ("field", "value"),
    [("_type", "https://in-toto.io/Statement/v0.1"), ("predicateType", "https://slsa.dev/provenance/v0.2")],
)
def test_row17_unsupported_statement_types(sim: ReleaseSimulator, pkg: Path, field: str, value: str) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json", lambda d: d.__setitem__(field, value))
    error = family(sim.verify(pkg), "provenance").errors[0]
    assert error.code == "provenance-mismatch" and "unsupported" in error.message


def test_row18_subject_digest_differs(sim: ReleaseSimulator, pkg: Path) -> None:
    def change(d):
        d["subject"][0]["digest"]["sha256"] = "0" * 64

    sim.rewrite_json(pkg, "rt.provenance.intoto.json", change)
    error = family(sim.verify(pkg), "provenance").errors[0]
    assert error.code == "provenance-mismatch" and "disagrees" in error.message


def test_row18_subject_missing_an_artifact(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json",
                     lambda d: d.__setitem__("subject", [s for s in d["subject"] if s["name"] != BIN]))
    error = family(sim.verify(pkg), "provenance").errors[0]
    assert error.code == "provenance-mismatch" and BIN in error.message


def test_row19_untrusted_builder(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json",
                     lambda d: d["predicate"]["runDetails"]["builder"].__setitem__("id", "https://evil.example/b"))
    assert family(sim.verify(pkg), "provenance").errors[0].code == "untrusted-builder"


def test_row19_builder_not_in_this_trust_root(sim: ReleaseSimulator, pkg: Path) -> None:
    root = sim.trust_root(builders=("https://github.com/actions/runner/github-hosted",))
    assert family(sim.verify(pkg, root), "provenance").errors[0].code == "untrusted-builder"


def test_row19_unexpected_build_type(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json",
                     lambda d: d["predicate"]["buildDefinition"].__setitem__("buildType", "https://x/y@v1"))
    error = family(sim.verify(pkg), "provenance").errors[0]
    assert error.code == "provenance-mismatch" and "buildType" in error.message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("repository", "attacker/runtime", "repository"), ("ref", "refs/tags/v1.2.2", "ref"),
     ("unexpected", "x", "unexpected")],
    ids=["fork", "other-tag", "extra-field"],
)
def test_row20_external_parameters_mismatch(sim: ReleaseSimulator, pkg: Path, key, value, expected) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json",
                     lambda d: d["predicate"]["buildDefinition"]["externalParameters"].__setitem__(key, value))
    error = family(sim.verify(pkg), "provenance").errors[0]
    assert error.code == "provenance-mismatch" and expected in error.message


def test_row21_source_commit_mismatch(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json", lambda d: d["predicate"]["buildDefinition"][
        "resolvedDependencies"][0]["digest"].__setitem__("gitCommit", "f" * 40))
    assert "source commit" in family(sim.verify(pkg), "provenance").errors[0].message


def test_row22_sbom_missing(sim: ReleaseSimulator, pkg: Path) -> None:
    name = "rt.sbom.spdx.json"
    (pkg / name).unlink()
    (pkg / f"{name}.sig.json").unlink()
    digests = parse_checksums((pkg / "checksums.txt").read_bytes()).as_dict()
    del digests[name]
    sim.rewrite(pkg, "checksums.txt", render_checksums(digests))
    result = sim.verify(pkg)
    assert family(result, "sbom").errors[0].code == "sbom-invalid"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.__setitem__("spdxVersion", "SPDX-2.2"),
        lambda d: d.__setitem__("documentNamespace", d["documentNamespace"] + "#frag"),
        lambda d: d.__setitem__("relationships",
                                [r for r in d["relationships"] if r["relationshipType"] != "DESCRIBES"]),
        lambda d: d["packages"][1]["checksums"][0].__setitem__("checksumValue", "abc"),
    ],
    ids=["spdx-2.2", "namespace-fragment", "no-describes", "bad-checksum-format"],
)
def test_row22_sbom_invalid(sim: ReleaseSimulator, pkg: Path, change) -> None:
    sim.rewrite_json(pkg, "rt.sbom.spdx.json", change)
    error = family(sim.verify(pkg), "sbom").errors[0]
    assert error.code == "sbom-invalid"


def test_row22_sbom_not_covered_by_checksums(sim: ReleaseSimulator, pkg: Path) -> None:
    digests = parse_checksums((pkg / "checksums.txt").read_bytes()).as_dict()
    del digests["rt.sbom.spdx.json"]
    sim.rewrite(pkg, "checksums.txt", render_checksums(digests))
    result = sim.verify(pkg)
    assert "unlisted-file" in codes(result)
    assert family(result, "sbom").errors[0].code == "sbom-invalid"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda d: d["packages"][1]["checksums"][0].__setitem__("checksumValue", "1" * 64), "SHA256"),
        (lambda d: d["packages"][1].__setitem__("versionInfo", "1.2.2"), "version"),
    ],
    ids=["checksum", "version"],
)
def test_row23_sbom_disagrees_with_binaries(sim: ReleaseSimulator, pkg: Path, change, text: str) -> None:
    sim.rewrite_json(pkg, "rt.sbom.spdx.json", change)
    error = family(sim.verify(pkg), "sbom").errors[0]
    assert error.code == "sbom-invalid" and text in error.message


def test_row24_installer_size_differs_from_signed_size(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.installers.json", lambda d: d["targets"][0].__setitem__("size_bytes", 1))
    error = family(sim.verify(pkg), "installers").errors[0]
    assert error.code == "metadata-mismatch" and "size_bytes" in error.message


def test_row24_installer_version_differs(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.installers.json", lambda d: d.__setitem__("version", "1.2.4"))
    assert family(sim.verify(pkg), "installers").errors[0].code == "binding-mismatch"


def test_row24_channel_from_another_release(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.channels.json", lambda d: d["channels"][2].__setitem__("version", "1.3.0-rc.1"))
    assert family(sim.verify(pkg), "channels-and-updater-policy").errors[0].code == "binding-mismatch"


@pytest.mark.parametrize(
    "name", ["rt.installers.json", "rt.sbom.spdx.json", "rt.provenance.intoto.json", "rt.channels.json",
             "rt.endpoint-deployment.json", "offline-trust-root-bootstrap.json"])
def test_row34_document_swapped_from_another_release(sim: ReleaseSimulator, pkg: Path, name: str) -> None:
    other = sim.package("1.2.2", out="other")
    # (a) document + its signature copied across: the signed manifest catches it
    plain = sim.copy(pkg, sim.root / "plain")
    for suffix in ("", ".sig.json"):
        shutil.copy(other / f"{name}{suffix}", plain / f"{name}{suffix}")
    assert "digest-mismatch" in codes(sim.verify(plain))
    # (b) an insider re-signs the manifest around the swapped document: binding checks catch it
    sim.rewrite(pkg, name, (other / name).read_bytes())
    result = sim.verify(pkg)
    assert not result.valid
    assert codes(result) & {"binding-mismatch", "provenance-mismatch", "sbom-invalid", "metadata-mismatch"}


def test_row35_key_rotation_with_old_and_new_signatures(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", extra_keys=(sim.second_key,))
    rotated = sim.trust_root(trusted(sim.key, "old", status=KeyStatus.RETIRED), trusted(sim.second_key, "new"))
    assert sim.verify(pkg, rotated).valid
    old_only = sim.package("1.2.3", out="old-only")
    assert codes(sim.verify(old_only, rotated)) == {"untrusted-key"}


@pytest.mark.parametrize("signer", ["key", "second_key"])
def test_row35_one_of_n_signers(sim: ReleaseSimulator, signer: str) -> None:
    pkg = sim.package("1.2.3", key=getattr(sim, signer))
    root = sim.trust_root(trusted(sim.key, "a"), trusted(sim.second_key, "b"))
    assert sim.verify(pkg, root).valid


def test_revoked_key_never_counts(sim: ReleaseSimulator, pkg: Path) -> None:
    root = sim.trust_root(trusted(sim.key, "a", status=KeyStatus.REVOKED), trusted(sim.second_key, "b"))
    result = sim.verify(pkg, root)
    assert codes(result) == {"untrusted-key"}
    assert "revoked" in result.errors[0].message


def test_key_outside_validity_window(sim: ReleaseSimulator, pkg: Path) -> None:
    root = sim.trust_root(trusted(sim.key, "a", valid_until=NOW - timedelta(days=1)), trusted(sim.second_key, "b"))
    assert "validity window" in sim.verify(pkg, root).errors[0].message
    assert sim.verify(pkg, root, now=NOW - timedelta(days=2)).valid


def test_trust_root_without_release_keys_is_bad_input(sim: ReleaseSimulator, pkg: Path) -> None:
    root = sim.trust_root(trusted(sim.key, "a", roles=(Role.ADVISORY,)))
    with pytest.raises(ConfigError, match="no active"):
        sim.verify(pkg, root)


def test_unsigned_dry_run_refused_unless_allowed(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", dry_run=True)
    assert (pkg / "unsigned-dry-run-notice.json").is_file()
    assert not list(pkg.rglob("*.sig.json"))
    refused = sim.verify(pkg)
    assert codes(refused) == {"unsigned-package"}
    allowed = sim.verify(pkg, allow_unsigned=True)
    assert allowed.valid and allowed.unsigned
    assert any("UNSIGNED" in w for w in allowed.warnings)


def test_symlink_in_package_is_refused(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / "link").symlink_to("/etc/passwd")
    from ringward.core.errors import UnsafePathError

    with pytest.raises(UnsafePathError):
        sim.verify(pkg)


def test_each_byte_hashed_once(sim: ReleaseSimulator, pkg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ringward.operations.release.verify as verify_module

    seen: list[int] = []
    original = verify_module._sha256

    def counting(data):
        seen.append(len(data))
        return original(data)

    monkeypatch.setattr(verify_module, "_sha256", counting)
    assert sim.verify(pkg).valid
    listed = parse_checksums((pkg / "checksums.txt").read_bytes()).as_dict()
    total = sum((pkg / n).stat().st_size for n in listed) + sum(
        (pkg / n).stat().st_size for n in ("checksums.txt", "release-evidence.json", "release-evidence.md"))
    assert sum(seen) == total
