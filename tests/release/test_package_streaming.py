"""Packaging streams binaries: same bytes as before, flat memory whatever the binary size.

The pinned digests below were produced by the pre-streaming code (whole-file mmap + one-shot
Ed25519 sign) for the fixed input of :func:`build_fixed_package`, before the change. The binary
signatures are the files streaming touches and depend on nothing else, so they are pinned
exactly; the documents' signatures and the zip are compared against the pre-streaming code
paths (one-shot ``sign_bytes`` and the previous zip writer), so the test stays meaningful when
document content legitimately changes (e.g. new fields in the offline bootstrap).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.errors import DigestMismatchError
from ringward.core.release.package_builder import ReleaseInfo
from ringward.core.release.streaming_signature import ed25519_sign_chunks, signature_document
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.signatures import parse_signature, sign_bytes
from ringward.operations.release.package import (
    ZIP_EPOCH,
    PackageResult,
    _sign_file,
    cosign_package,
    package_release,
)
from ringward.operations.release.progress import ByteMeter

REPO = Path(__file__).resolve().parents[2]

# --- the fixed input --------------------------------------------------------------------------------

BINARY_SIZES = {
    "rt_2.0.0_linux_amd64": 3 * 1024 * 1024 + 17,  # several chunks plus a ragged tail
    "rt_2.0.0_darwin_arm64": 1024 * 1024,  # exactly one chunk
    "rt_2.0.0_windows_amd64.exe": 4099,
    "rt_2.0.0_linux_arm64": 0,  # empty: the empty message still signs
}

#: produced by the pre-streaming code for this input (key seeds 1, 2; co-signed by key 3)
PINNED_BEFORE_STREAMING = {
    "bin/rt_2.0.0_darwin_arm64": "24a4faff7026c2cd8d901f44ea2c7505b947dfb0426264e1a58e079da57d8c50",
    "bin/rt_2.0.0_darwin_arm64.d22c9f78ee7b7f62.sig.json":
        "87b99e2c10ef5218499beb491a0eb3427a75de9a69cc049697baacfb3b02312d",
    "bin/rt_2.0.0_darwin_arm64.eca248765993d0c3.sig.json":
        "6875d6edaa6addcaabfce19c8357303ea95613592ca978b91b769049df3e964d",
    "bin/rt_2.0.0_darwin_arm64.sig.json": "84124fff076fd6e8c44c37ee86626024ddc97b7d3fd6c1f78b962470cf41cd7d",
    "bin/rt_2.0.0_linux_amd64": "42788d94a598babaf243b09df3583d84a4e83cc9a3528c08996b317ac15b7934",
    "bin/rt_2.0.0_linux_amd64.d22c9f78ee7b7f62.sig.json":
        "fa08abe1b59b99def90e27bbca2bf09e3ec02acc4fdf3b6184a0af9ac0bca4d7",
    "bin/rt_2.0.0_linux_amd64.eca248765993d0c3.sig.json":
        "69719a5ab730391d00a3899fb501b5ec6136eb9eae1c837302e2c9e9748021ad",
    "bin/rt_2.0.0_linux_amd64.sig.json": "f8cc58f866e8bc3536c7ef0933dcaa11d26ac4e56f11fe827b8e0ad25f54b34d",
    "bin/rt_2.0.0_linux_arm64": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "bin/rt_2.0.0_linux_arm64.d22c9f78ee7b7f62.sig.json":
        "b042b0e5cd4e33eeb9abf79888c0bccd2543bed638745f80f5fe244e303ae80e",
    "bin/rt_2.0.0_linux_arm64.eca248765993d0c3.sig.json":
        "d1283514f0ca30c5e0f7e0cc967624372a7a70acd4c2091167509cee6343a99e",
    "bin/rt_2.0.0_linux_arm64.sig.json": "0f412c70a0ffef37ba72a9e6577111f1943716b8826be3e74614618cc414d7c8",
    "bin/rt_2.0.0_windows_amd64.exe": "2580bc270f617137e88b86f15c3c8072aed7714b47f14e3223be51e56416ebde",
    "bin/rt_2.0.0_windows_amd64.exe.d22c9f78ee7b7f62.sig.json":
        "c1ba2ce2e97faf89b7532d1c352ae4b8ea1a68b87b2cb38a91043711447164f9",
    "bin/rt_2.0.0_windows_amd64.exe.eca248765993d0c3.sig.json":
        "446741788e9f37d975c91eeda78f383682f968812b7aa506ee6d50eb768b68b4",
    "bin/rt_2.0.0_windows_amd64.exe.sig.json": "854aced9c5b47cfc35899a890759cbde9437c432a858a81df709f22ee614efb3",
}


def fixed_key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ringward-streaming-test-key-%d" % n).digest())


def fixed_info() -> ReleaseInfo:
    return ReleaseInfo(runtime="rt", version="2.0.0", commit="c0ffee" + "0" * 34, ref="refs/tags/v2.0.0",
                       repository="acme/runtime", created_at=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
                       signer="fixed")


def fixed_dist(root: Path) -> Path:
    dist = root / "dist"
    dist.mkdir(parents=True)
    for name, size in BINARY_SIZES.items():
        (dist / name).write_bytes(hashlib.shake_256(name.encode()).digest(size) if size else b"")
    (dist / "dependencies.json").write_text(json.dumps(
        [{"name": "golang.org/x/sys", "version": "v0.38.0", "purl": "pkg:golang/golang.org/x/sys@v0.38.0"}]))
    return dist


def build_fixed_package(root: Path, **kwargs: object) -> PackageResult:
    return package_release(fixed_dist(root), root / "out", fixed_info(), fixed_key(1), make_zip=True,
                           extra_signing_keys=(fixed_key(2),), **kwargs)  # type: ignore[arg-type]


def zip_as_before_streaming(package_dir: Path, zip_path: Path, *, top: str) -> None:
    """The zip writer as it was before streaming (kept verbatim as the reference)."""
    files = sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", allowZip64=True) as archive:
        for rel in files:
            source = package_dir / rel
            executable = rel.startswith("bin/") and not rel.endswith(".sig.json")
            member = zipfile.ZipInfo(f"{top}/{rel}", date_time=ZIP_EPOCH)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.create_system = 3
            member.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            size = source.stat().st_size
            with open(source, "rb") as src, archive.open(member, "w", force_zip64=size > 0x7FFFFFFF) as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)


def tree_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- byte identity ------------------------------------------------------------------------------------


def test_package_is_byte_identical_to_the_pre_streaming_output(tmp_path: Path) -> None:
    result = build_fixed_package(tmp_path)
    assert result.zip_path is not None
    package = result.package_dir
    before_cosign = tree_digests(package)

    # the zip: byte for byte what the previous writer makes of the same directory
    reference_zip = tmp_path / "reference.zip"
    zip_as_before_streaming(package, reference_zip, top=package.name)
    assert result.zip_path.read_bytes() == reference_zip.read_bytes()

    # every signature file: exactly what the one-shot library signature over the whole file writes
    keys = {public_key_of(k).key_id: k for k in (fixed_key(1), fixed_key(2))}
    checked = 0
    for rel in before_cosign:
        if not rel.endswith(".sig.json"):
            continue
        sig = parse_signature((package / rel).read_bytes(), source=rel)
        key = keys[sig.key_id]
        expected = sign_bytes((package / sig.subject).read_bytes(), subject=sig.subject, private_key=key,
                              signer="fixed")
        assert (package / rel).read_bytes() == expected, rel
        checked += 1
    assert checked == 2 * (len(before_cosign) - checked)  # every file is signed by both keys

    written = cosign_package(package, fixed_key(3), "fixed-cosigner")
    after = tree_digests(package)
    assert len(written) == checked // 2
    for rel, digest in PINNED_BEFORE_STREAMING.items():
        assert after.get(rel) == digest, rel
    for rel in written:
        sig = parse_signature((package / rel).read_bytes(), source=rel)
        assert (package / rel).read_bytes() == sign_bytes((package / sig.subject).read_bytes(), subject=sig.subject,
                                                          private_key=fixed_key(3), signer="fixed-cosigner"), rel


def test_packaging_is_reproducible(tmp_path: Path) -> None:
    first = build_fixed_package(tmp_path / "a")
    second = build_fixed_package(tmp_path / "b")
    assert tree_digests(first.package_dir) == tree_digests(second.package_dir)
    assert first.zip_path is not None and second.zip_path is not None
    assert first.zip_path.read_bytes() == second.zip_path.read_bytes()


# --- the streamed signature ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_streamed_signature_equals_the_library_one_shot_signature(seed: int) -> None:
    rng = random.Random(seed)
    keys = [Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(rng.randint(1, 3))]
    message = rng.randbytes(rng.choice([0, 1, 31, 32, 64, 127, 4096, 100_003]))
    step = rng.randint(1, 5000)

    def chunks() -> list[bytes]:
        return [message[i:i + step] for i in range(0, len(message), step)]

    assert ed25519_sign_chunks(keys, chunks) == [k.sign(message) for k in keys]


def test_streamed_signature_verifies_and_binds_to_the_message() -> None:
    key = fixed_key(7)
    [signature] = ed25519_sign_chunks([key], lambda: [b"hello ", b"world"])
    key.public_key().verify(signature, b"hello world")
    assert ed25519_sign_chunks([key], lambda: [b"hello world!"]) != [signature]


def test_no_keys_reads_nothing() -> None:
    def never() -> list[bytes]:
        raise AssertionError("read without a key")

    assert ed25519_sign_chunks([], never) == []


def test_a_message_that_changes_between_the_two_passes_is_refused() -> None:
    calls = iter([[b"abc"], [b"abcd"]])
    with pytest.raises(ValueError, match="changed between"):
        ed25519_sign_chunks([fixed_key(1)], lambda: next(calls))


def test_signature_document_matches_sign_bytes_and_refuses_a_short_signature() -> None:
    key, data = fixed_key(4), b"payload"
    [signature] = ed25519_sign_chunks([key], lambda: [data])
    body = signature_document(signature, subject="bin/x", subject_sha256=hashlib.sha256(data).hexdigest(),
                              private_key=key, signer="me")
    assert body == sign_bytes(data, subject="bin/x", private_key=key, signer="me")
    with pytest.raises(ValueError, match="expected 64"):
        signature_document(signature[:63], subject="bin/x", subject_sha256="0" * 64, private_key=key, signer="me")


# --- memory -----------------------------------------------------------------------------------------

#: the binary packaged by the memory test, and the most the process's peak RSS may grow while
#: packaging it. Holding the binary (mapped or copied) even once grows it by >= 64 MiB.
MEMORY_BINARY = 64 * 1024 * 1024
MEMORY_GROWTH_LIMIT = 32 * 1024 * 1024

_MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from tests.release.test_package_streaming import build_memory_input, fixed_info, fixed_key
    from ringward.operations.common.files import mapped
    from ringward.operations.release.package import package_release

    def status(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise SystemExit(f"no {field} in /proc/self/status")

    def reset_high_water():
        # ru_maxrss / VmHWM after fork+exec still hold the parent's (pytest's) high-water mark:
        # reset it so the figures are this process's own
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            print(json.dumps({"reset": False}))
            raise SystemExit(0)

    root = Path(sys.argv[1])
    dist = build_memory_input(root)
    # warm-up: import and initialise everything packaging touches on a tiny package first
    package_release(build_memory_input(root / "warm", size=4096), root / "warm" / "out", fixed_info(),
                    fixed_key(1), make_zip=True, extra_signing_keys=(fixed_key(2),))
    reset_high_water()
    before = status("VmRSS")
    package_release(dist, root / "out", fixed_info(), fixed_key(1), make_zip=True,
                    extra_signing_keys=(fixed_key(2),))
    growth = status("VmHWM") - before
    # control: the same measurement does see a whole binary held in memory (as the old code did)
    reset_high_water()
    before = status("VmRSS")
    with mapped(dist / "rt_2.0.0_linux_amd64") as view:
        held = bytes(view)
    control = status("VmHWM") - before
    print(json.dumps({"reset": True, "growth": growth, "control": control, "held": len(held)}))
""")


def build_memory_input(root: Path, size: int = MEMORY_BINARY) -> Path:
    dist = root / "dist"
    dist.mkdir(parents=True)
    block = hashlib.shake_256(b"memory").digest(1024 * 1024)
    with open(dist / "rt_2.0.0_linux_amd64", "wb") as handle:
        for offset in range(0, size, len(block)):
            handle.write(block[: size - offset])
    return dist


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and semantics checked on Linux")
def test_packaging_a_64_mib_binary_keeps_peak_memory_flat(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path), str(REPO)], capture_output=True,
                          text=True, timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    if not figures["reset"]:
        pytest.skip("the kernel does not allow resetting the RSS high-water mark (/proc/self/clear_refs)")
    assert figures["growth"] < MEMORY_GROWTH_LIMIT, figures
    # the probe is sensitive: holding the binary once shows up as at least its size
    assert figures["control"] >= MEMORY_BINARY - MEMORY_GROWTH_LIMIT, figures


# --- a file that changes while it is signed --------------------------------------------------------


@pytest.mark.parametrize("replacement", [b"B" * 3000, b"A" * 2999, b"A" * 3001], ids=["same-size", "shrunk", "grown"])
def test_a_binary_changing_between_the_signing_passes_is_refused(tmp_path: Path, replacement: bytes) -> None:
    target = tmp_path / "bin"
    target.write_bytes(b"A" * 3000)

    def rewrite_after_first_pass(phase: str, done: int, total: int) -> None:
        if done == 3000:  # end of pass 1: swap the file (pass 1's open handle keeps the old one)
            (tmp_path / "new").write_bytes(replacement)
            os.replace(tmp_path / "new", target)

    meter = ByteMeter(rewrite_after_first_pass, "signing", 6000)
    with pytest.raises(DigestMismatchError, match="bin/x: changed while it was being"):
        _sign_file(target, "bin/x", [fixed_key(1)], expected_sha256=None, meter=meter)


def test_a_binary_that_differs_from_its_copied_digest_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    target.write_bytes(b"A" * 3000)
    digest, [signature] = _sign_file(target, "bin/x", [fixed_key(1)], expected_sha256=None)
    assert digest == hashlib.sha256(b"A" * 3000).hexdigest() and signature == fixed_key(1).sign(b"A" * 3000)
    with pytest.raises(DigestMismatchError, match="changed while it was being packaged"):
        _sign_file(target, "bin/x", [fixed_key(1)], expected_sha256="0" * 64)
