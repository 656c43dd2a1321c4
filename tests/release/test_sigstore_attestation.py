"""The keyless-attestation layer of verify-package: real Sigstore bundles from a private instance
(tests/release/sigstore_fixture.py), verified offline by sigstore-python against the supplied
trusted root, over the digests the signed checksums already verified."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import ConfigError, InputError
from ringward.operations.release.release_ops import run_verify_package
from ringward.operations.release.sigstore_attestation import keyless_options
from ringward.operations.trust.keys import save_trust_root
from tests.release.sigstore_fixture import (
    GITHUB_ISSUER,
    IDENTITY,
    SigstoreInstance,
    bundle_bytes,
    bundle_name,
    package_binaries,
    statement_for,
    write_bundles,
)
from tests.release.simulator import NOW, ReleaseSimulator

LINUX = "bin/rt_1.2.3_linux_amd64"
DARWIN = "bin/rt_1.2.3_darwin_arm64"


@dataclass
class Attested:
    sim: ReleaseSimulator
    pkg: Path
    trust: Path
    sigstore_root: Path
    instance: SigstoreInstance
    bundles: dict[str, bytes]

    def verify(self, **overrides: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "package_dir": str(self.pkg), "trust_root": str(self.trust), "now": NOW, "record": False,
            "sigstore_trusted_root": str(self.sigstore_root), "sigstore_identity": IDENTITY,
            "sigstore_issuer": GITHUB_ISSUER,
        }
        params.update(overrides)
        return run_verify_package(**params)

    def replace(self, binary: str, data: bytes) -> None:
        (self.pkg / bundle_name(binary)).write_bytes(data)

    def mutate(self, binary: str, change: Callable[[dict[str, Any]], None]) -> None:
        document = json.loads(self.bundles[binary])
        change(document)
        self.replace(binary, bundle_bytes(document))


@pytest.fixture
def attested(tmp_path: Path) -> Attested:
    sim = ReleaseSimulator(tmp_path)
    pkg = sim.package("1.2.3")
    trust = tmp_path / "trust-root.json"
    save_trust_root(trust, sim.trust_root(), overwrite=False)
    instance = SigstoreInstance()
    sigstore_root = tmp_path / "trusted_root.json"
    sigstore_root.write_bytes(instance.trusted_root_bytes())
    bundles = instance.attest(package_binaries(pkg))
    write_bundles(pkg, bundles)
    return Attested(sim, pkg, trust, sigstore_root, instance, bundles)


def _family(result: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in result["families"] if f["family"] == "keyless-attestation")


def _item(result: dict[str, Any], binary: str) -> dict[str, Any]:
    return next(a for a in result["keyless_attestation"]["attestations"] if a["binary"] == binary)


def _codes(result: dict[str, Any]) -> set[str]:
    return {e["code"] for e in result["errors"]}


def _only_error(result: dict[str, Any]) -> dict[str, Any]:
    assert not result["valid"]
    assert len(result["errors"]) == 1, result["errors"]
    error: dict[str, Any] = result["errors"][0]
    assert "\n" not in error["message"] and len(error["message"]) < 400, error["message"]
    return error


# --- verified --------------------------------------------------------------------------------------


def test_good_identity_verifies_every_binary(attested: Attested) -> None:
    result = attested.verify()
    assert result["valid"], result["errors"]
    family = _family(result)
    assert family["status"] == "passed" and len(family["checked"]) == 4 and not family["warnings"]
    report = result["keyless_attestation"]
    assert report["identity"] == IDENTITY and report["issuer"] == GITHUB_ISSUER and not report["required"]
    assert report["counts"] == {"verified": 4}
    indexes = set()
    for item in report["attestations"]:
        bundle = json.loads(attested.bundles[item["binary"]])
        entry = bundle["verificationMaterial"]["tlogEntries"][0]
        assert item["status"] == "verified" and item["identity"] == IDENTITY and item["issuer"] == GITHUB_ISSUER
        assert item["log_index"] == int(entry["logIndex"]) and item["integrated_time"].startswith("2026-11-20T")
        assert item["log_id"] == base64.b64decode(entry["logId"]["keyId"]).hex()
        assert not item["bundle_signed"] and len(item["certificate_sha256"]) == 64
        indexes.add(item["log_index"])
    assert len(indexes) == 4  # four entries of one log, each with its own inclusion proof


def test_e_mail_identity_verifies(tmp_path: Path) -> None:
    sim = ReleaseSimulator(tmp_path)
    pkg = sim.package("1.2.3")
    save_trust_root(tmp_path / "t.json", sim.trust_root(), overwrite=False)
    instance = SigstoreInstance()
    (tmp_path / "tr.json").write_bytes(instance.trusted_root_bytes())
    write_bundles(pkg, instance.attest(package_binaries(pkg), identity="release@acme.example",
                                       issuer="https://accounts.google.com"))
    result = run_verify_package(package_dir=str(pkg), trust_root=str(tmp_path / "t.json"), now=NOW, record=False,
                                sigstore_trusted_root=str(tmp_path / "tr.json"),
                                sigstore_identity="release@acme.example", sigstore_issuer="https://accounts.google.com")
    assert result["valid"], result["errors"]


def test_verification_is_offline(attested: Attested, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the keyless layer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert attested.verify()["valid"]


def test_signed_bundle_listed_in_checksums_verifies(attested: Attested) -> None:
    """A bundle made before packaging and listed in checksums.txt is signature-checked like any
    document, then verified from exactly those bytes."""
    path = attested.pkg / bundle_name(LINUX)
    data = path.read_bytes()
    path.unlink()
    attested.sim.add_file(attested.pkg, bundle_name(LINUX), data, "sigstore-bundle")
    result = attested.verify()
    assert result["valid"], result["errors"]
    assert _item(result, LINUX)["bundle_signed"] and _item(result, LINUX)["status"] == "verified"
    assert not _item(result, DARWIN)["bundle_signed"]


def test_listed_bundle_edited_after_signing_fails_integrity_and_is_not_attested(attested: Attested) -> None:
    path = attested.pkg / bundle_name(LINUX)
    data = path.read_bytes()
    path.unlink()
    attested.sim.add_file(attested.pkg, bundle_name(LINUX), data, "sigstore-bundle")
    attested.sim.flip_bit(path)
    result = attested.verify()
    assert not result["valid"] and "digest-mismatch" in _codes(result)
    assert not {c for c in _codes(result) if c.startswith("attestation")}
    assert _item(result, LINUX)["status"] == "not-checked"


# --- missing ----------------------------------------------------------------------------------------


def test_missing_bundle_is_reported_not_failed(attested: Attested) -> None:
    (attested.pkg / bundle_name(LINUX)).unlink()
    result = attested.verify()
    assert result["valid"], result["errors"]
    family = _family(result)
    assert family["status"] == "passed" and len(family["checked"]) == 3
    assert any(LINUX in w and "missing" in w for w in family["warnings"])
    assert _item(result, LINUX)["status"] == "missing"
    assert result["keyless_attestation"]["counts"] == {"verified": 3, "missing": 1}


def test_missing_bundle_fails_with_require_sigstore(attested: Attested) -> None:
    (attested.pkg / bundle_name(LINUX)).unlink()
    error = _only_error(attested.verify(require_sigstore=True))
    assert error["code"] == "attestation-missing" and LINUX in error["message"]


def test_no_bundles_at_all(attested: Attested) -> None:
    for binary in attested.bundles:
        (attested.pkg / bundle_name(binary)).unlink()
    result = attested.verify()
    assert result["valid"] and result["keyless_attestation"]["counts"] == {"missing": 4}
    assert len(attested.verify(require_sigstore=True)["errors"]) == 4


# --- wrong signer -----------------------------------------------------------------------------------


def test_wrong_identity_fails(attested: Attested) -> None:
    other = "https://github.com/evil/fork/.github/workflows/release.yml@refs/heads/main"
    result = attested.verify(sigstore_identity=other)
    assert not result["valid"] and _codes(result) == {"attestation-identity-mismatch"}
    assert len(result["errors"]) == 4
    message = result["errors"][0]["message"]
    assert "\n" not in message and other in message and IDENTITY in message
    assert _item(result, LINUX)["status"] == "failed"


def test_wrong_issuer_fails(attested: Attested) -> None:
    result = attested.verify(sigstore_issuer="https://accounts.google.com")
    assert not result["valid"] and _codes(result) == {"attestation-identity-mismatch"}
    message = result["errors"][0]["message"]
    assert "OIDC issuer" in message and GITHUB_ISSUER in message and "accounts.google.com" in message


def test_one_binary_signed_by_another_identity(attested: Attested) -> None:
    rogue = attested.instance.attest({LINUX: (attested.pkg / LINUX).read_bytes()},
                                     identity="https://github.com/acme/runtime/.github/workflows/ci.yml@refs/pull/7")
    attested.replace(LINUX, rogue[LINUX])
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-identity-mismatch" and "ci.yml@refs/pull/7" in error["message"]


def test_bundle_from_another_sigstore_instance_fails(attested: Attested) -> None:
    """Signed with the right identity and issuer, but by a CA (and log) the trusted root does not name."""
    other = SigstoreInstance(name="elsewhere")
    attested.replace(LINUX, other.attest({LINUX: (attested.pkg / LINUX).read_bytes()})[LINUX])
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "does not chain" in error["message"]


def test_trusted_root_of_another_instance_fails_every_bundle(attested: Attested) -> None:
    attested.sigstore_root.write_bytes(SigstoreInstance(name="elsewhere").trusted_root_bytes())
    result = attested.verify()
    assert not result["valid"] and _codes(result) == {"attestation-invalid"} and len(result["errors"]) == 4


# --- wrong bytes ------------------------------------------------------------------------------------


def test_tampered_binary_is_caught_by_the_package_checksums_first(attested: Attested) -> None:
    attested.sim.flip_bit(attested.pkg / LINUX)
    result = attested.verify()
    assert not result["valid"] and "digest-mismatch" in _codes(result)
    assert not {c for c in _codes(result) if c.startswith("attestation")}
    assert _item(result, LINUX)["status"] == "not-checked"
    assert _item(result, DARWIN)["status"] == "verified"


def test_tampered_binary_resigned_by_an_insider_fails_the_attestation(attested: Attested) -> None:
    """The release key holder re-signs altered bytes: checksums pass, the keyless attestation (made by
    CI for the original bytes) does not."""
    attested.sim.rewrite(attested.pkg, LINUX, (attested.pkg / LINUX).read_bytes() + b"# implant\n")
    result = attested.verify()
    assert {c for c in _codes(result) if c.startswith("attestation")} == {"attestation-invalid"}
    message = next(e["message"] for e in result["errors"] if e["code"] == "attestation-invalid")
    assert "digest mismatch" in message and LINUX in message


def test_bundle_for_different_bytes_fails(attested: Attested) -> None:
    other = attested.instance.attest({LINUX: b"some other program\n"})
    attested.replace(LINUX, other[LINUX])
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "digest mismatch" in error["message"]


def test_bundle_of_another_binary_fails(attested: Attested) -> None:
    attested.replace(LINUX, attested.bundles[DARWIN])
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and bundle_name(LINUX) in error["message"]


def test_bundle_without_message_digest_still_binds_the_bytes(attested: Attested) -> None:
    """Dropping the (optional) documented digest does not help: the signature itself is over the digest."""
    document = json.loads(attested.bundles[DARWIN])
    del document["messageSignature"]["messageDigest"]
    attested.replace(LINUX, bundle_bytes(document))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "Signature is invalid" in error["message"]


# --- forged or broken log material ---------------------------------------------------------------


def _entry(document: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = document["verificationMaterial"]["tlogEntries"][0]
    return entry


def _flip_proof_hash(d: dict[str, Any]) -> None:
    hashes = _entry(d)["inclusionProof"]["hashes"]
    raw = bytearray(base64.b64decode(hashes[0]))
    raw[0] ^= 1
    hashes[0] = base64.b64encode(bytes(raw)).decode()


def _checkpoint_by_another_log(d: dict[str, Any]) -> None:
    proof = _entry(d)["inclusionProof"]
    size = int(proof["treeSize"])
    proof["checkpoint"]["envelope"] = SigstoreInstance(name="elsewhere").checkpoint(
        size, base64.b64decode(proof["rootHash"]))


def _later_integrated_time(d: dict[str, Any]) -> None:
    _entry(d)["integratedTime"] = str(int(_entry(d)["integratedTime"]) + 60)


def _signature_of_another_bundle(other: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["messageSignature"]["signature"] = other["messageSignature"]["signature"]
    return change


def _log_entry_of_another_bundle(other: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """CVE-2022-36056 shape: a valid log entry for other material next to this certificate/signature."""
    def change(d: dict[str, Any]) -> None:
        d["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]
    return change


def _two_log_entries(d: dict[str, Any]) -> None:
    d["verificationMaterial"]["tlogEntries"] *= 2


def _no_checkpoint(d: dict[str, Any]) -> None:
    del _entry(d)["inclusionProof"]["checkpoint"]


@pytest.mark.parametrize(("change", "code", "needle"), [
    pytest.param(_flip_proof_hash, "attestation-invalid", "inclusion proof", id="inclusion-proof-hash"),
    pytest.param(_checkpoint_by_another_log, "attestation-invalid", "checkpoint", id="checkpoint-other-log"),
    pytest.param(_later_integrated_time, "attestation-invalid", "inclusion promise", id="integrated-time-moved"),
    pytest.param(_two_log_entries, "attestation-malformed", "exactly one log entry", id="two-log-entries"),
    pytest.param(_no_checkpoint, "attestation-malformed", "checkpoint", id="no-checkpoint"),
])
def test_forged_log_material_fails(attested: Attested, change: Callable[[dict[str, Any]], None], code: str,
                                   needle: str) -> None:
    attested.mutate(LINUX, change)
    error = _only_error(attested.verify())
    assert error["code"] == code and needle in error["message"], error


@pytest.mark.parametrize("swap", ["signature", "log-entry"])
def test_mixed_bundle_parts_fail(attested: Attested, swap: str) -> None:
    other = json.loads(attested.bundles[DARWIN])
    attested.mutate(LINUX, _signature_of_another_bundle(other) if swap == "signature"
                    else _log_entry_of_another_bundle(other))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid", error


def test_certificate_never_logged_to_ct_fails(attested: Attested) -> None:
    """A leaf the trusted CA issued without an SCT (a mis-issuance nobody could see) is refused."""
    signed = attested.instance.sign((attested.pkg / LINUX).read_bytes(), sct=False)
    attested.instance.append([signed])
    attested.replace(LINUX, bundle_bytes(attested.instance.bundle(signed)))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "SCT" in error["message"]


# --- malformed bundles ----------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "needle"), [
    pytest.param(b"", "", id="empty"),
    pytest.param(b"{not json", "", id="not-json"),
    pytest.param(b'{"mediaType": "a", "mediaType": "b"}', "duplicate key", id="duplicate-key"),
    pytest.param(b"\xef\xbb\xbf{}", "BOM", id="bom"),
    pytest.param(b"[]", "JSON object", id="array"),
    pytest.param(b"{}", "not a valid Sigstore bundle", id="empty-object"),
    pytest.param(b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.9+json", "verificationMaterial": {}}',
                 "not a valid Sigstore bundle", id="unknown-media-type"),
    pytest.param(b'{"a": NaN}', "", id="nan"),
])
def test_malformed_bundle_is_one_line(attested: Attested, data: bytes, needle: str) -> None:
    attested.replace(LINUX, data)
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-malformed" and bundle_name(LINUX) in error["message"], error
    assert needle in error["message"], error


def test_bad_base64_certificate_is_malformed(attested: Attested) -> None:
    attested.mutate(LINUX, lambda d: d["verificationMaterial"]["certificate"].__setitem__("rawBytes", "!!!"))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-malformed", error


def test_oversized_bundle_is_refused_unread(attested: Attested) -> None:
    attested.replace(LINUX, b" " * (1024 * 1024 + 1))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-malformed" and "at most" in error["message"], error


def test_envelope_swapped_into_a_message_signature_bundle_fails(attested: Attested) -> None:
    def to_dsse(d: dict[str, Any]) -> None:
        del d["messageSignature"]
        d["dsseEnvelope"] = {"payload": base64.b64encode(b"{}").decode(), "payloadType": "application/vnd.in-toto+json",
                             "signatures": [{"sig": base64.b64encode(b"x" * 64).decode()}]}
    attested.mutate(LINUX, to_dsse)
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "DSSE" in error["message"], error


# --- DSSE attestations (GitHub artifact attestations) --------------------------------------------


def test_provenance_attestations_verify(attested: Attested) -> None:
    write_bundles(attested.pkg, attested.instance.attest_provenance(package_binaries(attested.pkg)))
    result = attested.verify(require_sigstore=True)
    assert result["valid"], result["errors"]
    item = _item(result, LINUX)
    assert item["kind"] == "dsse-statement" and item["subject_name"] == "rt_1.2.3_linux_amd64"
    assert item["predicate_type"] == "https://slsa.dev/provenance/v1" and item["identity"] == IDENTITY


def test_attestation_about_other_bytes_fails(attested: Attested) -> None:
    other = attested.instance.attest_provenance({LINUX: b"another build\n"})
    attested.replace(LINUX, other[LINUX])
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "names no subject" in error["message"], error


def test_attestation_by_another_identity_fails(attested: Attested) -> None:
    rogue = attested.instance.attest_provenance({LINUX: (attested.pkg / LINUX).read_bytes()},
                                                issuer="https://accounts.google.com")
    attested.replace(LINUX, rogue[LINUX])
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-identity-mismatch", error


def _log_signed_statement(attested: Attested, statement: dict[str, Any], **kwargs: Any) -> bytes:
    signed = attested.instance.sign_statement(statement, **kwargs)
    attested.instance.append([signed])
    return bundle_bytes(attested.instance.bundle(signed))


def test_attestation_with_another_payload_type_fails(attested: Attested) -> None:
    statement = statement_for(LINUX, (attested.pkg / LINUX).read_bytes())
    attested.replace(LINUX, _log_signed_statement(attested, statement, payload_type="application/json"))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "payload type" in error["message"], error


def test_attestation_of_an_unknown_statement_type_is_malformed(attested: Attested) -> None:
    statement = statement_for(LINUX, (attested.pkg / LINUX).read_bytes())
    statement["_type"] = "https://example.com/NotAStatement"
    attested.replace(LINUX, _log_signed_statement(attested, statement))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-malformed" and "_type" in error["message"], error


def test_attestation_payload_swapped_after_signing_fails(attested: Attested) -> None:
    bundles = attested.instance.attest_provenance(package_binaries(attested.pkg))
    document = json.loads(bundles[LINUX])
    statement = statement_for(LINUX, (attested.pkg / LINUX).read_bytes())
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example/builder"
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    attested.replace(LINUX, bundle_bytes(document))
    error = _only_error(attested.verify())
    assert error["code"] == "attestation-invalid" and "DSSE" in error["message"], error


# --- layout rules -----------------------------------------------------------------------------------


def test_without_the_layer_unlisted_bundles_stay_unlisted_files(attested: Attested) -> None:
    """Behaviour unchanged without the options: the package is exactly its signed manifest."""
    result = run_verify_package(package_dir=str(attested.pkg), trust_root=str(attested.trust), now=NOW, record=False)
    assert not result["valid"] and _codes(result) == {"unlisted-file"}
    assert "keyless_attestation" not in result
    assert all(f["family"] != "keyless-attestation" for f in result["families"])


def test_a_bundle_named_after_no_binary_is_still_an_unlisted_file(attested: Attested) -> None:
    (attested.pkg / "github-attestations" / "implant.sigstore-bundle.json").write_bytes(attested.bundles[LINUX])
    result = attested.verify()
    assert not result["valid"] and _codes(result) == {"unlisted-file"}
    assert "implant" in result["errors"][0]["message"]


def test_signature_file_next_to_an_unlisted_bundle_is_refused(attested: Attested) -> None:
    attested.sim.sign_file(attested.pkg, bundle_name(LINUX))
    result = attested.verify()
    assert not result["valid"] and _codes(result) == {"unlisted-file"}


def test_package_failing_integrity_skips_the_family(attested: Attested) -> None:
    (attested.pkg / "checksums.txt.sig.json").unlink()
    result = attested.verify()
    assert not result["valid"] and _family(result)["status"] == "skipped"
    assert result["keyless_attestation"]["attestations"] == []


# --- evidence ---------------------------------------------------------------------------------------


def test_evidence_keeps_the_trusted_root_and_bundles(attested: Attested, ringward_home: Path) -> None:
    from ringward.settings import evidence_root

    result = attested.verify(record=True)
    assert result["valid"]
    bundle_dir = evidence_root() / result["evidence"]["bundle_dir"]
    assert (bundle_dir / "keyless" / "trusted_root.json").read_bytes() == attested.sigstore_root.read_bytes()
    kept = bundle_dir / "keyless" / Path(bundle_name(LINUX)).name
    assert kept.read_bytes() == attested.bundles[LINUX]
    recorded = json.loads((bundle_dir / "result.json").read_bytes())
    assert recorded["keyless_attestation"]["trusted_root"]["sha256"] == \
        result["keyless_attestation"]["trusted_root"]["sha256"]


# --- options ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "needle"), [
    ((None, IDENTITY, None, False), "--sigstore-trusted-root, --sigstore-issuer: required with --sigstore-identity"),
    (("tr.json", None, None, False), "--sigstore-identity, --sigstore-issuer: required"),
    (("tr.json", IDENTITY, None, False), "--sigstore-issuer: required"),
    ((None, None, None, True), "--require-sigstore: needs"),
    (("tr.json", "two words", GITHUB_ISSUER, False), "--sigstore-identity: expected"),
    (("tr.json", IDENTITY, "token.actions.githubusercontent.com", False), "--sigstore-issuer: expected"),
    (("tr.json", IDENTITY, "ftp://issuer.example", False), "--sigstore-issuer: expected"),
])
def test_partial_or_bad_options_are_bad_input(args: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(InputError) as raised:
        keyless_options(*args)
    assert needle in raised.value.message and raised.value.exit_code == 2


def test_no_options_is_no_layer() -> None:
    assert keyless_options(None, None, None, False) is None
    assert keyless_options("", "", "", False) is None


@pytest.mark.parametrize(("content", "needle"), [
    pytest.param(b"", "", id="empty"),
    pytest.param(b"{}", "expected a Sigstore trusted root", id="no-media-type"),
    pytest.param(b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}', "not a usable",
                 id="nothing-in-it"),
])
def test_unusable_trusted_root_is_bad_config(attested: Attested, content: bytes, needle: str) -> None:
    attested.sigstore_root.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        attested.verify()
    assert str(attested.sigstore_root) in raised.value.message and needle in raised.value.message
    assert "\n" not in raised.value.message


@pytest.mark.parametrize("part", ["ctlogs", "tlogs", "certificateAuthorities"])
def test_trusted_root_missing_a_part_is_bad_config(attested: Attested, part: str) -> None:
    document = attested.instance.trusted_root()
    document[part] = []
    attested.sigstore_root.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as raised:
        attested.verify()
    assert "not a usable Sigstore trusted root" in raised.value.message and "\n" not in raised.value.message


def test_reference_package_attestations_verify_under_the_reference_profile(tmp_path: Path) -> None:
    """A reference (CAVRA) package: per-binary bundles are verified; the reference's zip-level bundle
    and github-keyless-attestation.json stay reported-and-ignored, as without the layer."""
    from ringward.core.trust.root import TrustRoot
    from tests.release.reference_packages import ReferenceGenerator
    from tests.release.simulator import trusted

    gen = ReferenceGenerator(tmp_path / "ref")
    pkg = gen.package(keyless_attestation=True)
    save_trust_root(tmp_path / "t.json", TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra-release"),)),
                    overwrite=False)
    instance = SigstoreInstance()
    (tmp_path / "tr.json").write_bytes(instance.trusted_root_bytes())
    binaries = package_binaries(pkg)
    write_bundles(pkg, instance.attest_provenance(binaries))
    zip_bundle = pkg / "github-attestations" / "cavra-go-runtime-v1.2.5.sigstore-bundle.json"
    zip_bundle.write_bytes(b"{}")
    result = run_verify_package(package_dir=str(pkg), trust_root=str(tmp_path / "t.json"), now=NOW, record=False,
                                profile="reference", sigstore_trusted_root=str(tmp_path / "tr.json"),
                                sigstore_identity=IDENTITY, sigstore_issuer=GITHUB_ISSUER, require_sigstore=True)
    assert result["valid"], result["errors"]
    assert result["keyless_attestation"]["counts"] == {"verified": len(binaries)}
    assert any(zip_bundle.name in w and "ignored" in w for w in result["warnings"])
