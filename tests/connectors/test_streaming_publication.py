"""Installers are streamed to Intune and Jamf Pro: memory is bounded by the block size, not the installer.

- A 200 MiB installer (``RINGWARD_STREAMING_TEST_MIB`` to change it) that does not compress away is
  published through the real engine in a child process (``bench/bench_publication_memory.py child``)
  against the loopback emulators running here (they spill large uploads to disk and judge them by
  streaming): the child's peak RSS growth and peak Python allocations stay under 32 MiB, and what
  arrived is exactly the installer (Intune: decrypted by the emulator's own decryptor, unzipped;
  Jamf: the multipart part's SHA-256).
- The streamed forms are byte for byte the in-memory ones: the zip written from file handles equals
  :func:`build_zip`, in-place encryption equals :func:`encrypt_content` under the same keys (and the
  emulator decrypts it to the same package), the streamed multipart body equals
  :func:`multipart_file` (boundary lengthening included).
- The confined reader checks the digest before it hands over the last chunk.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import random
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from connectors import artifacts
from connectors.artifacts import ArtifactError, open_artifact
from connectors.providers import jamf_pro
from connectors.providers.intune_graph import (
    build_zip,
    decrypt_content,
    encrypt_content,
    encrypt_file,
    write_package,
)
from connectors.providers.jamf_pro import multipart_file, prepare_upload
from ringward.core.delivery.publication_artifact import ArtifactFile
from tests.connectors.graph_emulator import GraphEmulator, verify_intunewin, verify_intunewin_file
from tests.connectors.jamf_emulator import JamfEmulator

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_publication_memory.py"
MIB = 1024 * 1024
#: installer size of the memory test
INSTALLER_MIB = int(os.environ.get("RINGWARD_STREAMING_TEST_MIB", "200"))
#: what the publisher may grow by, whatever the installer's size (4 MiB blocks, 1 MiB chunks)
BOUND_MIB = 32


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_publication_memory", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def item_of(root: Path, name: str) -> ArtifactFile:
    data = (root / name).read_bytes()
    return ArtifactFile.model_validate(
        {"artifact": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    )


# -- memory --------------------------------------------------------------------------------------------------


def test_a_large_installer_is_published_in_memory_bounded_by_the_block_size(tmp_path: Path) -> None:
    bench = _bench()
    root = tmp_path / "export"
    root.mkdir()
    size = INSTALLER_MIB * MIB

    name = "cavra-runtime-setup.exe"
    sha256 = bench.make_installer(root / name, INSTALLER_MIB)
    graph = GraphEmulator(pending_polls=0).start()
    try:
        spec = bench.child_spec(
            "intune", url=graph.base, token_url=graph.token_url, root=root, name=name, sha256=sha256, size=size
        )
        intune = bench.run_child(spec)
        assert intune["status"] == "delivered", intune["error"]
        # the committed upload decrypted (by the emulator's own streaming judge) to a zip of exactly the installer
        bench.check_intune(graph, intune, name, sha256)
        blocks = graph.of_step("block")
        assert len(blocks) == -(-(size + 64) // (4 * MIB)) and max(b.length for b in blocks) == 4 * MIB
    finally:
        graph.stop()

    # the same bytes as a Jamf package (renamed: a hard link would be refused)
    (root / name).rename(root / "cavra-runtime-1.4.2.pkg")
    name = "cavra-runtime-1.4.2.pkg"
    jamf = JamfEmulator(client_id=bench.JAMF_CLIENT, client_secret=bench.JAMF_SECRET, token=bench.JAMF_TOKEN).start()
    try:
        spec = bench.child_spec("jamf", url=jamf.url, root=root, name=name, sha256=sha256, size=size)
        jamf_result = bench.run_child(spec)
        assert jamf_result["status"] == "delivered", jamf_result["error"]
        bench.check_jamf(jamf, sha256, size)  # the multipart part is exactly the installer
        (upload,) = jamf.of("upload package")
        assert "transfer-encoding" not in upload.headers and int(upload.headers["content-length"]) == upload.length
    finally:
        jamf.stop()

    for result in (intune, jamf_result):
        # the child's own growth during the delivery: far below the installer, whatever its size
        assert result["rss_growth_mib"] < BOUND_MIB, result
        assert result["python_peak_mib"] < BOUND_MIB, result


# -- the streamed forms are the in-memory forms --------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1000, 4096, 65536])
def test_the_zip_streamed_from_file_handles_is_byte_for_byte_build_zip(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    files = {
        "setup/app.exe": rng.randbytes(50_001),
        "install.ps1": b"Start-Process app.exe\r\n" * 100,  # compresses
        "empty.txt": b"",
        "b-exact.bin": rng.randbytes(4 * chunk),
    }
    root = tmp_path / "export"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    package = write_package(str(root), [item_of(root, n) for n in files], str(work))
    expected = build_zip(sorted(files.items()))
    assert Path(package.path).read_bytes() == expected and package.size == len(expected)
    assert os.stat(package.path).st_mode & 0o777 == 0o600
    with zipfile.ZipFile(package.path) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == files


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 999, 1000, 1008, 65_536, 100_003])
def test_in_place_encryption_is_byte_for_byte_encrypt_content(tmp_path: Path, size: int) -> None:
    plain = random.Random(size).randbytes(size)
    path = tmp_path / "package.zip"
    path.write_bytes(plain)
    keys = {"key": b"k" * 32, "mac_key": b"m" * 32, "iv": b"i" * 16}
    streamed = encrypt_file(str(path), chunk_bytes=1000, **keys)  # chunks not a multiple of the AES block
    reference = encrypt_content(plain, **keys)
    data = streamed.head + path.read_bytes()
    assert data == reference.data and streamed.encryption_info == reference.encryption_info
    assert (streamed.size, streamed.size_encrypted) == (reference.size, reference.size_encrypted) == (size, len(data))
    assert b"".join(streamed.blocks(64)) == data and all(len(b) <= 64 for b in streamed.blocks(64))
    assert decrypt_content(data, streamed.encryption_info) == plain
    sizes: dict[str, Any] = {"size": size, "size_encrypted": len(data)}
    assert verify_intunewin(data, streamed.encryption_info, **sizes) == plain
    whole, out = tmp_path / "whole", tmp_path / "plain"
    whole.write_bytes(data)
    digest = verify_intunewin_file(whole, streamed.encryption_info, **sizes, plain_to=out)
    assert out.read_bytes() == plain and digest == hashlib.sha256(plain).hexdigest()


def test_fresh_keys_every_time_and_the_streaming_judge_refuses_tampering(tmp_path: Path) -> None:
    plain = b"zip" * 10_000
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(plain)
    second.write_bytes(plain)
    one, two = encrypt_file(str(first)), encrypt_file(str(second))
    assert one.head != two.head and first.read_bytes() != second.read_bytes()
    whole = tmp_path / "whole"
    whole.write_bytes(one.head + first.read_bytes())
    sizes: dict[str, Any] = {"size": one.size, "size_encrypted": one.size_encrypted}
    assert verify_intunewin_file(whole, one.encryption_info, **sizes) == hashlib.sha256(plain).hexdigest()
    tampered = bytearray(whole.read_bytes())
    tampered[100] ^= 1
    whole.write_bytes(bytes(tampered))
    with pytest.raises(Exception, match="HMAC-SHA256"):
        verify_intunewin_file(whole, one.encryption_info, **sizes)
    whole.write_bytes(one.head + first.read_bytes())
    wrong = {**one.encryption_info, "fileDigest": base64.b64encode(b"\0" * 32).decode()}
    with pytest.raises(Exception, match="fileDigest"):
        verify_intunewin_file(whole, wrong, **sizes)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"plain installer bytes" * 1000,
        b"ringward-b0undary",  # the boundary itself: lengthened by one x
        b"<ringward-b0undaryxx>\r\nringward-b0undaryxxxxx",  # the longest x run decides
        b"ringward-b0undaryx" * 10 + b"xxx",  # runs spanning chunks, one at the very end
        b"ringward-b0undar",  # a partial boundary changes nothing
    ],
)
def test_the_streamed_multipart_body_is_byte_for_byte_multipart_file(
    tmp_path: Path, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 7)  # occurrences and runs span chunks
    # the real boundary comes from the content's digest, so no file can hold it short of a SHA-256
    # fixed point: a fixed one lets the lengthening (and the second hashing pass) be tested
    monkeypatch.setattr(jamf_pro, "multipart_boundary", lambda sha256: "ringward-b0undary")
    root = tmp_path / "export"
    root.mkdir()
    (root / "app.pkg").write_bytes(content)
    with open_artifact(str(root), item_of(root, "app.pkg")) as reader:
        upload = prepare_upload(reader, "app.pkg")
        body = b"".join(upload.body.chunks())
        again = b"".join(upload.body.chunks())  # every send reads the file again
    expected, content_type = multipart_file("app.pkg", content)
    assert body == again == expected and upload.content_type == content_type
    assert upload.body.length == len(expected) and upload.body.sha256 == hashlib.sha256(expected).hexdigest()
    assert upload.sha512 == hashlib.sha512(content).hexdigest()


def test_the_boundary_is_derived_from_the_content_digest(tmp_path: Path) -> None:
    root = tmp_path / "export"
    root.mkdir()
    content = os.urandom(3000)
    (root / "app.pkg").write_bytes(content)
    with open_artifact(str(root), item_of(root, "app.pkg")) as reader:
        upload = prepare_upload(reader, "app.pkg")
        assert b"".join(upload.body.chunks()) == multipart_file("app.pkg", content)[0]
    digest = hashlib.sha256(content).hexdigest()
    assert upload.content_type == f"multipart/form-data; boundary=ringward-{digest[:32]}"


# -- the confined reader -------------------------------------------------------------------------------------


def test_the_reader_checks_the_digest_before_handing_over_the_last_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "CHUNK_BYTES", 100)
    root = tmp_path / "export"
    root.mkdir()
    data = os.urandom(1000)
    (root / "app.exe").write_bytes(data)
    item = item_of(root, "app.exe")
    with open_artifact(str(root), item) as reader:
        assert b"".join(reader.chunks()) == data
        # rewritten in place after the check at open (same inode, same size, other bytes)
        with (root / "app.exe").open("r+b") as handle:
            handle.seek(999)
            handle.write(b"\0" if data[-1] else b"\1")
        handed: list[bytes] = []
        with pytest.raises(ArtifactError, match=r"expected sha256 .* found sha256 .*\(1000 bytes\); nothing uploaded"):
            for chunk in reader.chunks():
                handed.append(chunk)
        assert sum(map(len, handed)) == 900  # the last chunk was never handed over
        with (root / "app.exe").open("ab") as handle:
            handle.write(b"more")
        with pytest.raises(ArtifactError, match=r"\(1001 bytes\)"):
            reader.verify()
