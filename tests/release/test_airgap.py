"""Air-gapped bundle verification: zip hazards (tamper rows 29-30) and safe extraction."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from ringward.core.errors import OutputExistsError
from ringward.operations.release.airgap import ZipLimits, verify_airgap_bundle
from ringward.operations.release.package import write_reproducible_zip
from tests.release.simulator import NOW, ReleaseSimulator

TOP = "rt-1.2.3"


@pytest.fixture
def bundle(sim: ReleaseSimulator) -> Path:
    pkg = sim.package("1.2.3", make_zip=True)
    return pkg.parent / f"{TOP}.zip"


def verify(sim: ReleaseSimulator, path: Path, **kwargs):
    return verify_airgap_bundle(path, sim.trust_root(), now=NOW, **kwargs)


def archive_error(result) -> str:
    archive = next(f for f in result.package.families if f.family == "archive")
    assert archive.status == "failed", result.package.errors
    return archive.errors[0].message


def rebuild(source: Path, target: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = (),
            skip: set[str] = frozenset()) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename not in skip:
                dst.writestr(info, src.read(info))
        for member, data in extra:
            dst.writestr(member, data)
    return target


def test_valid_bundle_verifies_and_extracts(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "extract"
    result = verify(sim, bundle, extract_dir=target)
    assert result.valid, result.package.errors
    assert result.extracted_to == str(target / TOP)
    extracted = sim.verify(target / TOP)
    assert extracted.valid
    assert [p.name for p in target.iterdir()] == [TOP]  # staging directory renamed away


def test_extract_dir_must_be_empty(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(OutputExistsError):
        verify(sim, bundle, extract_dir=tmp_path / "busy")


def test_invalid_bundle_extracts_nothing(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = rebuild(bundle, tmp_path / "bad.zip", extra=[(f"{TOP}/planted.sh", b"#!/bin/sh\n")])
    result = verify(sim, bad, extract_dir=tmp_path / "extract-out")
    assert not result.valid
    assert "unlisted-file" in result.package.error_codes()
    assert not (tmp_path / "extract-out").exists() or not any((tmp_path / "extract-out").iterdir())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (f"{TOP}/../evil.sh", "'..'"),
        ("/etc/evil.sh", "absolute"),
        (f"{TOP}\\evil.sh", "backslash"),
        ("C:/Windows/evil.sh", "drive-letter"),
        (f"{TOP}/./evil.sh", "'.'"),
        (f"{TOP}//evil.sh", "''"),
    ],
    ids=["dotdot", "absolute", "backslash", "drive-letter", "dot", "empty-component"],
)
def test_row29_unsafe_member_names(sim: ReleaseSimulator, bundle: Path, tmp_path: Path, name: str,
                                   reason: str) -> None:
    bad = rebuild(bundle, tmp_path / "bad.zip", extra=[(name, b"x")])
    message = archive_error(verify(sim, bad))
    assert "unsafe archive member path" in message and reason in message


def test_row29_symlink_member(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    link = zipfile.ZipInfo(f"{TOP}/bin/rt")
    link.create_system = 3
    link.external_attr = (0o120777 & 0xFFFF) << 16
    message = archive_error(verify(sim, rebuild(bundle, tmp_path / "bad.zip", extra=[(link, b"/etc/passwd")])))
    assert "symlink" in message


def test_row29_device_member(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    dev = zipfile.ZipInfo(f"{TOP}/dev")
    dev.create_system = 3
    dev.external_attr = (0o020644 & 0xFFFF) << 16
    assert "special-file" in archive_error(verify(sim, rebuild(bundle, tmp_path / "bad.zip", extra=[(dev, b"")])))


def test_row29_duplicate_member(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        bad = rebuild(bundle, tmp_path / "bad.zip", extra=[(f"{TOP}/checksums.txt", b"evil")])
    assert "duplicate archive member" in archive_error(verify(sim, bad))


def test_row29_case_collision(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = rebuild(bundle, tmp_path / "bad.zip", extra=[(f"{TOP}/CHECKSUMS.txt", b"evil")])
    assert "case is ignored" in archive_error(verify(sim, bad))


def test_row29_two_top_level_folders(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = rebuild(bundle, tmp_path / "bad.zip", extra=[("other/readme", b"x")])
    assert "exactly one top-level" in archive_error(verify(sim, bad))


def _patch_central(data: bytearray, member: str, offset: int, fmt: str, value: int) -> None:
    position = 0
    encoded = member.encode()
    while True:
        position = data.index(b"PK\x01\x02", position)
        name_len = struct.unpack_from("<H", data, position + 28)[0]
        if bytes(data[position + 46: position + 46 + name_len]) == encoded:
            struct.pack_into(fmt, data, position + offset, value)
            return
        position += 4


def _local_offset(data: bytes, member: str) -> int:
    position = 0
    while True:
        position = data.index(b"PK\x03\x04", position)
        name_len = struct.unpack_from("<H", data, position + 26)[0]
        if data[position + 30: position + 30 + name_len] == member.encode():
            return position
        position += 4


def test_row29_overlapping_entries(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    data = bytearray(bundle.read_bytes())
    names = zipfile.ZipFile(bundle).namelist()
    _patch_central(data, names[1], 42, "<I", _local_offset(data, names[0]))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    message = archive_error(verify(sim, bad))
    assert "overlaps the previous member" in message


def test_row29_prepended_data(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"MZ-polyglot-header" + bundle.read_bytes())
    assert "prepended" in archive_error(verify(sim, bad))


def test_row29_trailing_data(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bundle.read_bytes() + b"hidden payload")
    assert "trailing data" in archive_error(verify(sim, bad))


def test_row29_central_and_local_names_differ(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    data = bytearray(bundle.read_bytes())
    member = f"{TOP}/checksums.txt"
    local = _local_offset(data, member)
    data[local + 30 + len(member) - 1] = ord("X")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    assert "differs from the central directory" in archive_error(verify(sim, bad))


def test_row29_encrypted_member(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    data = bytearray(bundle.read_bytes())
    _patch_central(data, f"{TOP}/checksums.txt", 8, "<H", 0x1)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    assert "encrypted" in archive_error(verify(sim, bad))


def test_row29_unknown_compression_method(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    data = bytearray(bundle.read_bytes())
    _patch_central(data, f"{TOP}/checksums.txt", 10, "<H", 99)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    assert "unsupported compression method 99" in archive_error(verify(sim, bad))


def test_row30_compression_ratio_bomb(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bomb = zipfile.ZipInfo(f"{TOP}/bin/zeros")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    bad = rebuild(bundle, tmp_path / "bad.zip", extra=[(bomb, bytes(16 * 1024 * 1024))])
    result = verify(sim, bad)
    assert "compression ratio" in archive_error(result)
    assert next(f for f in result.package.families if f.family == "archive").errors[0].code == "archive-limit"


def test_row30_declared_size_smaller_than_actual(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    data = bytearray(bundle.read_bytes())
    member = f"{TOP}/bin/rt_1.2.3_linux_amd64"
    _patch_central(data, member, 24, "<I", 10)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    result = verify(sim, bad)
    assert not result.valid
    assert result.package.error_codes() & {"size-mismatch", "unsafe-archive"}


def test_row30_declared_size_larger_than_signed_size(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    data = bytearray(bundle.read_bytes())
    member = f"{TOP}/bin/rt_1.2.3_linux_amd64"
    _patch_central(data, member, 24, "<I", 10_000_000)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    result = verify(sim, bad)
    assert not result.valid
    assert "size-mismatch" in result.package.error_codes() or "archive-limit" in result.package.error_codes()


def test_row30_entry_count_cap(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "many.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        for index in range(100_000):
            archive.writestr(f"{TOP}/f{index}", b"")
    message = archive_error(verify(sim, bad))
    assert "100000 members, cap is 10000" in message


def test_row30_total_size_cap(sim: ReleaseSimulator, bundle: Path) -> None:
    result = verify_airgap_bundle(bundle, sim.trust_root(), now=NOW, limits=ZipLimits(max_total_bytes=1000))
    assert "expands to more than 1000 bytes" in archive_error(result)


def test_bundle_member_not_in_signed_list(sim: ReleaseSimulator, bundle: Path, tmp_path: Path) -> None:
    bad = rebuild(bundle, tmp_path / "bad.zip", skip={f"{TOP}/rt.sbom.spdx.json"})
    result = verify(sim, bad)
    assert "missing-file" in result.package.error_codes()


def test_missing_bootstrap_reported_unless_allowed(sim: ReleaseSimulator, tmp_path: Path) -> None:
    # a reference-style package without the bootstrap file, still signed and listed consistently
    pkg = sim.package("1.2.3", out="nob")
    from ringward.core.common.checksums import parse_checksums, render_checksums

    (pkg / "offline-trust-root-bootstrap.json").unlink()
    (pkg / "offline-trust-root-bootstrap.json.sig.json").unlink()
    digests = parse_checksums((pkg / "checksums.txt").read_bytes()).as_dict()
    del digests["offline-trust-root-bootstrap.json"]
    sim.rewrite(pkg, "checksums.txt", render_checksums(digests))
    zip_path = tmp_path / "nob.zip"
    write_reproducible_zip(pkg, zip_path, top=TOP)
    result = verify(sim, zip_path)
    boot = next(f for f in result.package.families if f.family == "airgap-bootstrap")
    assert boot.status == "failed" and "missing from checksums.txt" in boot.errors[0].message


def test_not_a_zip(sim: ReleaseSimulator, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    assert not verify(sim, bad).valid
