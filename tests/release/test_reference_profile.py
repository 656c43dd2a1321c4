"""The reference profile: reference (CAVRA) packages verify under a pinned key, exactly what the
reference packager writes and nothing more; every tamper-matrix attack on them is refused; the
default profile refuses them and says how to ask for the reference profile."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import KeyStatus, TrustRoot
from ringward.operations.release.airgap import verify_airgap_bundle
from ringward.operations.release.smoke import smoke_installers
from ringward.operations.release.upgrade import validate_upgrade
from ringward.operations.release.verify import verify_package
from tests.release.reference_packages import (
    BOOTSTRAP,
    CHANNELS,
    CI_BUNDLES,
    ENDPOINT,
    EVIDENCE_MD,
    INSTALLERS,
    PROVENANCE,
    RUNNER_SCRIPT,
    SBOM,
    ReferenceGenerator,
    load,
    reseal,
    rewrite_json,
    sign_file,
    write_json,
    zip_package,
)
from tests.release.simulator import NOW, ReleaseSimulator, codes, family, timedelta, trusted

VERSION = "1.2.5"
BIN = f"bin/cavra-runtime_{VERSION}_linux_amd64"
ED25519_L = 2**252 + 27742317777372353535851937790883648493


@pytest.fixture
def gen(tmp_path: Path) -> ReferenceGenerator:
    return ReferenceGenerator(tmp_path / "ref")


@pytest.fixture
def root(gen: ReferenceGenerator) -> TrustRoot:
    return TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra-release"),))


def verify(pkg: Path, root: TrustRoot, profile: str = "reference", **kwargs):
    return verify_package(pkg, root, now=NOW, profile=profile, **kwargs)


@pytest.mark.parametrize("ci_controls", ["stored", "verifier"])
@pytest.mark.parametrize("keyless", [False, True], ids=["plain", "with-keyless-attestation"])
def test_reference_profile_accepts_signed_reference_packages(gen, root, ci_controls: str, keyless: bool) -> None:
    pkg = gen.package(VERSION, ci_controls=ci_controls, keyless_attestation=keyless)
    result = verify(pkg, root)
    assert result.valid, result.errors
    assert result.profile_name == "reference"
    assert public_key_of(gen.key).key_id in result.signers
    warnings = "\n".join(result.warnings)
    assert f"{EVIDENCE_MD}: present, not covered by any signature, ignored" in warnings
    assert ("github-keyless-attestation.json: present, not covered by any signature, ignored" in warnings) == keyless
    assert "creationInfo.created" in warnings and "validated as '2026-11-20T09:30:15Z'" in warnings
    assert ("5 CI-runner controls" in warnings) == (ci_controls == "stored")
    assert family(result, "ci-runner-bundles").status == "passed"
    assert EVIDENCE_MD not in result.verified_files


def test_auto_detects_and_announces(gen, root, sim: ReleaseSimulator) -> None:
    result = verify(gen.package(VERSION), root, profile="auto")
    assert result.valid, result.errors
    assert result.to_dict()["profile"] == {"name": "reference", "source": "detected",
                                           "reason": "release-evidence.json product 'CAVRA'", "looks_like": "reference"}
    assert result.to_dict()["profile_announcement"] == \
        "profile reference (detected: release-evidence.json product 'CAVRA')"
    ringward_pkg = sim.package("1.2.3")
    own = verify_package(ringward_pkg, sim.trust_root(), now=NOW, profile="auto")
    assert own.valid and own.profile_name == "ringward" and own.profile.source == "detected"


def test_default_profile_refuses_with_the_hint(gen, root) -> None:
    result = verify(gen.package(VERSION), root, profile="ringward")
    assert not result.valid
    assert result.hint is not None and "--profile reference" in result.hint
    assert result.to_dict()["hint"] == result.hint


def test_ringward_refusals_carry_no_reference_hint(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3")
    sim.flip_bit(pkg / "bin" / "rt_1.2.3_linux_amd64")
    result = verify_package(pkg, sim.trust_root(), now=NOW)
    assert not result.valid and result.hint is None


def test_reference_profile_requires_what_the_reference_verifier_requires(gen, root, sim) -> None:
    no_bundles = gen.package(VERSION, out="nobundles", ci_bundles=False)
    error = family(verify(no_bundles, root), "ci-runner-bundles").errors[0]
    assert error.code == "missing-file" and "ci-runner-bundles" in error.message
    # a Ringward package has no CI-runner bundles: the reference verifier would refuse it as well
    assert not verify_package(sim.package("1.2.3"), sim.trust_root(), now=NOW, profile="reference").valid


def test_signed_markdown_is_verified_but_not_compared(gen, root) -> None:
    pkg = gen.package(VERSION)
    sign_file(pkg, EVIDENCE_MD, gen.key, key_id="label", signer="hand")
    result = verify(pkg, root)
    assert result.valid, result.errors
    assert not any(EVIDENCE_MD in w for w in result.warnings)


def test_unsigned_markdown_is_never_used(gen, root) -> None:
    pkg = gen.package(VERSION)
    (pkg / EVIDENCE_MD).write_text("# everything is fine, deploy version 9.9.9\n")
    result = verify(pkg, root)
    assert result.valid
    assert any(w.startswith(f"{EVIDENCE_MD}: present, not covered") for w in result.warnings)


def test_dry_run_needs_allow_unsigned(gen, root) -> None:
    pkg = gen.package(VERSION, signed=False, dry_run=True)
    assert codes(verify(pkg, root)) == {"unsigned-package"}
    allowed = verify(pkg, root, allow_unsigned=True)
    assert allowed.valid and allowed.unsigned, allowed.errors


def test_workflow_dry_run_version_is_accepted_with_a_warning_but_never_upgrades(gen, root) -> None:
    """The reference workflow's dry runs use `version=dry-run`; its verifier never looks at the form."""
    dry = gen.package("dry-run", signed=False, dry_run=True)
    result = verify(dry, root, allow_unsigned=True)
    assert result.valid, result.errors
    assert any("'dry-run' is not a canonical SemVer" in w for w in result.warnings)
    assert "version-conflict" in codes(verify(dry, root, profile="ringward", allow_unsigned=True))
    upgrade = validate_upgrade(gen.package("dry-run", out="signed"), gen.package(VERSION), root, now=NOW,
                               profile="reference")
    assert {e.code for e in upgrade.errors} == {"version-conflict"}


def test_reference_airgap_bundle(gen, root, tmp_path: Path) -> None:
    archive = zip_package(gen.package(VERSION))
    result = verify_airgap_bundle(archive, root, now=NOW, profile="reference", extract_dir=tmp_path / "x")
    assert result.valid, result.package.errors
    assert (tmp_path / "x" / f"go-runtime-{VERSION}" / "checksums.txt").is_file()
    detected = verify_airgap_bundle(archive, root, now=NOW, profile="auto")
    assert detected.valid and detected.package.profile_name == "reference"
    refused = verify_airgap_bundle(archive, root, now=NOW)
    assert not refused.valid and refused.package.hint


def test_reference_upgrade_and_rollback(gen, root) -> None:
    old = gen.package("1.2.4", out="a")
    new = gen.package(VERSION, out="b")
    upgrade = validate_upgrade(old, new, root, now=NOW, profile="reference")
    assert upgrade.valid, upgrade.errors
    assert upgrade.to_dict()["profiles"] == {"previous": "reference", "candidate": "reference"}
    rollback = validate_upgrade(new, old, root, now=NOW, profile="auto")
    assert {e.code for e in rollback.errors} == {"rollback-rejected"}


def test_reference_smoke_installers(gen, root) -> None:
    pkg = gen.package(VERSION)
    smoke = smoke_installers(pkg, root, now=NOW, profile="reference", target="linux/amd64")
    assert smoke.valid, smoke.errors
    # the reference's protocol (§4.4): its policy request on stdin, a JSON decision back
    (execution,) = smoke.executions
    assert execution.probe == "reference-json" and execution.decision == "allow"
    assert execution.command == ["cavra-runtime"] and execution.stdin is not None
    assert json.loads(execution.stdin)["session_id"] == "installer-smoke"
    assert smoke.to_dict()["profile"] == "reference" and smoke.to_dict()["probe"] == "reference-json"
    versioned = smoke_installers(pkg, root, now=NOW, profile="reference", target="linux/amd64", probe="version")
    assert versioned.valid and f"cavra-runtime version {VERSION}" in versioned.executions[0].stdout
    assert not smoke_installers(pkg, root, now=NOW, execute=False).valid


# --- the tamper matrix (tests/release/test_tamper_matrix.py) over a reference package ----------------


@dataclass
class Ctx:
    gen: ReferenceGenerator
    pkg: Path
    attacker: Ed25519PrivateKey
    second: Ed25519PrivateKey
    root: TrustRoot

    def insider(self, name: str, change: Callable[[dict], None]) -> None:
        rewrite_json(self.pkg, name, change, self.gen.key)

    def other(self) -> Path:
        return self.gen.package("1.2.4", out="other")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _sig(ctx: Ctx, name: str) -> dict:
    return load(ctx.pkg, f"{name}.sig.json")


def _put_sig(ctx: Ctx, name: str, sig: dict) -> None:
    write_json(ctx.pkg / f"{name}.sig.json", sig)


def _manifest_edit(ctx: Ctx) -> None:
    _flip(ctx.pkg / BIN)
    text = (ctx.pkg / "checksums.txt").read_text().splitlines()
    digest = hashlib.sha256((ctx.pkg / BIN).read_bytes()).hexdigest()
    (ctx.pkg / "checksums.txt").write_text("\n".join(f"{digest}  {BIN}" if line.endswith(BIN) else line
                                                     for line in text) + "\n")


def _resigned_by_attacker(ctx: Ctx) -> None:
    _flip(ctx.pkg / BIN)
    reseal(ctx.pkg, ctx.attacker)


def _signed_by_unpinned_key(ctx: Ctx) -> None:
    shutil.rmtree(ctx.pkg)
    ctx.pkg = ctx.gen.package(VERSION, out="unpinned", key=ctx.attacker)


def _hint_spoofed(ctx: Ctx) -> None:
    sign_file(ctx.pkg, "checksums.txt", ctx.attacker, key_id="cavra-go-release", signer="x")
    sig = _sig(ctx, "checksums.txt")
    sig["key_id"] = public_key_of(ctx.gen.key).key_id
    sig["public_key_sha256"] = public_key_of(ctx.gen.key).pem_sha256
    _put_sig(ctx, "checksums.txt", sig)


def _trusted_pem_attacker_signature(ctx: Ctx) -> None:
    sign_file(ctx.pkg, "checksums.txt", ctx.attacker, key_id="cavra-go-release", signer="x")
    sig = _sig(ctx, "checksums.txt")
    trusted_pub = public_key_of(ctx.gen.key)
    sig["public_key_pem"], sig["public_key_sha256"] = trusted_pub.pem, trusted_pub.pem_sha256
    _put_sig(ctx, "checksums.txt", sig)


def _non_canonical(ctx: Ctx) -> None:
    sig = _sig(ctx, "checksums.txt")
    raw = base64.b64decode(sig["value"])
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    sig["value"] = base64.b64encode(raw[:32] + s.to_bytes(32, "little")).decode()
    _put_sig(ctx, "checksums.txt", sig)


def _set_sig_value(value: str) -> Callable[[Ctx], None]:
    def attack(ctx: Ctx) -> None:
        sig = _sig(ctx, BIN)
        sig["value"] = value
        _put_sig(ctx, BIN, sig)
    return attack


def _duplicate_as_cosignature(ctx: Ctx) -> None:
    ctx.root = TrustRoot(updated_at=NOW, keys=(trusted(ctx.gen.key, "a"), trusted(ctx.second, "b")),
                         thresholds={"release": 2})
    same = public_key_of(ctx.gen.key).key_id[:16]
    for sig in list(ctx.pkg.rglob("*.sig.json")):
        shutil.copy(sig, sig.with_name(sig.name.replace(".sig.json", f".{same}.sig.json")))


def _signature_for_unlisted(ctx: Ctx) -> None:
    (ctx.pkg / "extra.txt").write_bytes(b"x")
    sign_file(ctx.pkg, "extra.txt", ctx.gen.key, key_id="l", signer="s")


def _malformed_manifest(ctx: Ctx) -> None:
    text = (ctx.pkg / "checksums.txt").read_text()
    (ctx.pkg / "checksums.txt").write_text(text + text.splitlines(keepends=True)[0])
    sign_file(ctx.pkg, "checksums.txt", ctx.gen.key, key_id="l", signer="s")


def _previous_manifest(ctx: Ctx) -> None:
    other = ctx.other()
    for name in ("checksums.txt", "checksums.txt.sig.json"):
        shutil.copy(other / name, ctx.pkg / name)


def _provenance_text(change: Callable[[str], str]) -> Callable[[Ctx], None]:
    def attack(ctx: Ctx) -> None:
        path = ctx.pkg / PROVENANCE
        path.write_text(change(path.read_text()))
        reseal(ctx.pkg, ctx.gen.key, provenance=False)
    return attack


def _insider(name: str, change: Callable[[dict], None]) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.insider(name, change)


def _params(key: str, value: str) -> Callable[[dict], None]:
    return lambda d: d["predicate"]["buildDefinition"]["externalParameters"].__setitem__(key, value)


def _remove_sbom(ctx: Ctx) -> None:
    (ctx.pkg / SBOM).unlink()
    (ctx.pkg / f"{SBOM}.sig.json").unlink()
    reseal(ctx.pkg, ctx.gen.key)


def _swap(name: str, resign: bool) -> Callable[[Ctx], None]:
    def attack(ctx: Ctx) -> None:
        other = ctx.other()
        if resign:
            shutil.copy(other / name, ctx.pkg / name)
            reseal(ctx.pkg, ctx.gen.key, provenance=name != PROVENANCE)
        else:
            for suffix in ("", ".sig.json"):
                shutil.copy(other / f"{name}{suffix}", ctx.pkg / f"{name}{suffix}")
    return attack


def _revoked(ctx: Ctx) -> None:
    ctx.root = TrustRoot(updated_at=NOW, keys=(trusted(ctx.gen.key, "a", status=KeyStatus.REVOKED),
                                               trusted(ctx.second, "b")))


def _expired(ctx: Ctx) -> None:
    ctx.root = TrustRoot(updated_at=NOW, keys=(trusted(ctx.gen.key, "a", valid_until=NOW - timedelta(days=1)),
                                               trusted(ctx.second, "b")))


def _markdown_signed_by_attacker(ctx: Ctx) -> None:
    sign_file(ctx.pkg, EVIDENCE_MD, ctx.attacker, key_id="cavra-go-release", signer="x")


def _notice_in_signed_package(ctx: Ctx) -> None:
    write_json(ctx.pkg / "unsigned-dry-run-notice.json", {"schema_version": "cavra.go-release.unsigned-notice.v1",
                                                          "reason": "x", "dry_run": True})


def _bundle_controls(ctx: Ctx) -> None:
    ctx.insider(CI_BUNDLES, lambda d: d.__setitem__("controls", d["controls"][:3]))


ATTACKS: list[tuple[str, Callable[[Ctx], None], str]] = [
    ("row1-flipped-bit", lambda ctx: _flip(ctx.pkg / BIN), "digest-mismatch"),
    ("row2-truncate", lambda ctx: (ctx.pkg / BIN).write_bytes((ctx.pkg / BIN).read_bytes()[:-1]), "size-mismatch"),
    ("row2-append", lambda ctx: (ctx.pkg / BIN).write_bytes((ctx.pkg / BIN).read_bytes() + b"\0"), "size-mismatch"),
    ("row3-checksums-edited", _manifest_edit, "signature-invalid"),
    ("row4-removed-signature", lambda ctx: (ctx.pkg / f"{BIN}.sig.json").unlink(), "signature-missing"),
    ("row4-63-byte-signature", _set_sig_value(base64.b64encode(b"\x01" * 63).decode()), "signature-malformed"),
    ("row4-non-base64-signature", _set_sig_value("not*base64!"), "signature-malformed"),
    ("row4-empty-signature-file", lambda ctx: (ctx.pkg / f"{BIN}.sig.json").write_bytes(b""), "malformed-document"),
    ("row5-resigned-with-another-key", _resigned_by_attacker, "untrusted-key"),
    ("row5-signed-by-unpinned-key", _signed_by_unpinned_key, "untrusted-key"),
    ("row6-key-id-hint-spoofed", _hint_spoofed, "untrusted-key"),
    ("row6-trusted-pem-as-hint", _trusted_pem_attacker_signature, "signature-invalid"),
    ("row7-duplicated-signature-threshold-2", _duplicate_as_cosignature, "threshold-not-met"),
    ("row9-non-canonical-signature", _non_canonical, "signature-invalid"),
    ("row10-unlisted-file", lambda ctx: (ctx.pkg / "bin" / "cavra-runtime").write_bytes(b"#!/bin/sh\n"),
     "unlisted-file"),
    ("row10-signature-for-unlisted-subject", _signature_for_unlisted, "unlisted-file"),
    ("row11-listed-file-missing", lambda ctx: (ctx.pkg / BIN).unlink(), "missing-file"),
    ("row12-malformed-manifest-validly-signed", _malformed_manifest, "malformed-manifest"),
    ("row13-manifest-from-previous-release", _previous_manifest, "binding-mismatch"),
    ("row16-duplicate-key", _provenance_text(lambda t: t.replace('"subject": [', '"subject": [], "subject": [', 1)),
     "malformed-document"),
    ("row16-trailing-data", _provenance_text(lambda t: t + "\n{}"), "malformed-document"),
    ("row17-statement-type", _insider(PROVENANCE, lambda d: d.__setitem__("_type", "https://in-toto.io/Statement/v0.1")),
     "provenance-mismatch"),
    ("row18-subject-digest", _provenance_text(lambda t: t.replace('"sha256": "', '"sha256": "0', 1)),
     "provenance-mismatch"),
    ("row18-subject-missing", _insider(PROVENANCE, lambda d: d.__setitem__(
        "subject", [s for s in d["subject"] if s["name"] != BIN])), "provenance-mismatch"),
    ("row19-untrusted-builder", _insider(PROVENANCE, lambda d: d["predicate"]["runDetails"]["builder"].__setitem__(
        "id", "https://evil.example/b")), "untrusted-builder"),
    ("row19-build-type", _insider(PROVENANCE, lambda d: d["predicate"]["buildDefinition"].__setitem__(
        "buildType", "https://x/y@v1")), "provenance-mismatch"),
    ("row20-fork", _insider(PROVENANCE, _params("repository", "attacker/cavra")), "provenance-mismatch"),
    ("row20-other-tag", _insider(PROVENANCE, _params("ref", "refs/tags/v1.2.4")), "provenance-mismatch"),
    ("row20-extra-field", _insider(PROVENANCE, _params("unexpected", "x")), "provenance-mismatch"),
    ("row21-source-commit", _insider(PROVENANCE, lambda d: d["predicate"]["buildDefinition"][
        "resolvedDependencies"][0]["digest"].__setitem__("gitCommit", "f" * 40)), "provenance-mismatch"),
    ("row22-sbom-missing", _remove_sbom, "sbom-invalid"),
    ("row22-spdx-2.2", _insider(SBOM, lambda d: d.__setitem__("spdxVersion", "SPDX-2.2")), "sbom-invalid"),
    ("row22-namespace-fragment", _insider(SBOM, lambda d: d.__setitem__(
        "documentNamespace", d["documentNamespace"] + "#frag")), "sbom-invalid"),
    ("row22-unparseable-timestamp", _insider(SBOM, lambda d: d["creationInfo"].__setitem__("created", "yesterday")),
     "sbom-invalid"),
    ("row22-sbom-of-another-release", _insider(SBOM, lambda d: d.update(
        name="CAVRA Go Runtime 1.2.4", documentNamespace=d["documentNamespace"].replace(VERSION, "1.2.4"))),
     "sbom-invalid"),
    ("row23-installer-digest", _insider(INSTALLERS, lambda d: d["targets"][0].__setitem__("binary_sha256", "1" * 64)),
     "metadata-mismatch"),
    ("row24-installer-size", _insider(INSTALLERS, lambda d: d["targets"][0].__setitem__("size_bytes", 1)),
     "metadata-mismatch"),
    ("row24-installer-version", _insider(INSTALLERS, lambda d: d.__setitem__("version", "1.2.6")),
     "binding-mismatch"),
    ("row24-channel-from-another-release", _insider(CHANNELS, lambda d: d["channels"][2].__setitem__(
        "version", "1.3.0-rc.1")), "binding-mismatch"),
    *[(f"row34-swapped-{name}", _swap(name, resign=False), "digest-mismatch")
      for name in (INSTALLERS, SBOM, PROVENANCE, CHANNELS, ENDPOINT, BOOTSTRAP, CI_BUNDLES)],
    *[(f"row34-swapped-and-resealed-{name}", _swap(name, resign=True), code)
      for name, code in ((INSTALLERS, "binding-mismatch"), (SBOM, "sbom-invalid"), (PROVENANCE, "provenance-mismatch"),
                         (CHANNELS, "binding-mismatch"), (ENDPOINT, "binding-mismatch"),
                         (BOOTSTRAP, "binding-mismatch"), (CI_BUNDLES, "binding-mismatch"))],
    ("revoked-key", _revoked, "untrusted-key"),
    ("key-outside-validity-window", _expired, "untrusted-key"),
    ("markdown-signed-by-unpinned-key", _markdown_signed_by_attacker, "untrusted-key"),
    ("dry-run-notice-in-signed-package", _notice_in_signed_package, "unsigned-package"),
    ("ci-wrapper-tampered", lambda ctx: _flip(ctx.pkg / RUNNER_SCRIPT), "digest-mismatch"),
    ("ci-controls-below-both-generations", _bundle_controls, "metadata-mismatch"),
]


@pytest.mark.parametrize(("attack", "code"), [(a, c) for _, a, c in ATTACKS], ids=[i for i, _, _ in ATTACKS])
def test_reference_profile_refuses_each_attack(gen, root, attack: Callable[[Ctx], None], code: str) -> None:
    ctx = Ctx(gen, gen.package(VERSION), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), root)
    assert verify(ctx.pkg, ctx.root).valid  # the untouched package passes
    attack(ctx)
    result = verify(ctx.pkg, ctx.root)
    assert not result.valid
    assert code in codes(result), [e.to_dict() for e in result.errors]


def test_attack_list_covers_the_tamper_matrix_rows() -> None:
    source = (Path(__file__).parent / "test_tamper_matrix.py").read_text()
    rows = {line.split("_")[1] for line in source.splitlines() if line.startswith("def test_row")}
    covered = {attack_id.split("-")[0] for attack_id, _, _ in ATTACKS}
    # rows 8 (small-order key) and 35 (valid releases) concern trust roots / positives, not a package attack
    assert rows - covered <= {"row8", "row35"}, rows - covered
