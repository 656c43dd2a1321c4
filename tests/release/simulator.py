"""Release simulator: builds small signed packages and mutates them, like python-tuf's
RepositorySimulator. Each test changes one thing; `rewrite` re-signs consistently with the
trusted key when a case needs a validly-signed lie (an insider with the release key)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.common.checksums import parse_checksums, render_checksums
from ringward.core.release.package_builder import ReleaseInfo, render_release_evidence_md
from ringward.core.release.verification import PackageVerification
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustRoot
from ringward.core.trust.signatures import sign_bytes
from ringward.operations.release.package import package_release
from ringward.operations.release.verify import verify_package
from ringward.operations.trust.keys import new_trusted_key

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TARGETS = ("linux_amd64", "linux_arm64", "darwin_arm64", "windows_amd64.exe")
RUNTIME = "rt"


def trusted(key: Ed25519PrivateKey, label: str, *, roles: tuple[Role, ...] = (Role.RELEASE,),
            status: KeyStatus = KeyStatus.ACTIVE, valid_from: datetime | None = None,
            valid_until: datetime | None = None) -> Any:
    entry = new_trusted_key(public_key_of(key), list(roles), label, valid_from, valid_until)
    return entry.model_copy(update={"status": status})


@dataclass
class ReleaseSimulator:
    root: Path
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    second_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    attacker_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def trust_root(self, *keys: Any, threshold: int = 1, builders: tuple[str, ...] | None = None) -> TrustRoot:
        entries = keys or (trusted(self.key, "release-1"),)
        extra: dict[str, Any] = {}
        if builders is not None:
            extra["trusted_builders"] = builders
        return TrustRoot(updated_at=NOW, keys=tuple(entries), thresholds={Role.RELEASE: threshold}, **extra)

    def dist(self, version: str, *, name: str | None = None, targets: tuple[str, ...] = TARGETS,
             payload: bytes = b"") -> Path:
        dist = self.root / (name or f"dist-{version}")
        dist.mkdir(parents=True, exist_ok=True)
        for target in targets:
            body = (f"#!/bin/sh\necho '{RUNTIME} version {version}'\n".encode() + payload + b"exit 0\n# "
                    + target.encode() * 64 + b"\n")
            path = dist / f"{RUNTIME}_{version}_{target}"
            path.write_bytes(body)
            path.chmod(0o755)
        deps = [{"name": "golang.org/x/sys", "version": "v0.38.0", "purl": "pkg:golang/golang.org/x/sys@v0.38.0"}]
        (dist / "dependencies.json").write_text(json.dumps(deps))
        return dist

    def info(self, version: str, **overrides: Any) -> ReleaseInfo:
        values: dict[str, Any] = {
            "runtime": RUNTIME, "version": version, "commit": "c0ffee" + "0" * 34, "ref": f"refs/tags/v{version}",
            "repository": "acme/runtime", "created_at": NOW, "signer": "sim",
        }
        values.update(overrides)
        return ReleaseInfo(**values)

    def package(self, version: str = "1.2.3", *, out: str = "out", key: Ed25519PrivateKey | None = None,
                extra_keys: tuple[Ed25519PrivateKey, ...] = (), make_zip: bool = False, dry_run: bool = False,
                targets: tuple[str, ...] = TARGETS, payload: bytes = b"", **info: Any) -> Path:
        dist = self.dist(version, name=f"dist-{out}-{version}", targets=targets, payload=payload)
        signing = None if dry_run else (key or self.key)
        result = package_release(dist, self.root / out, self.info(version, dry_run=dry_run, **info), signing,
                                 make_zip=make_zip, extra_signing_keys=extra_keys)
        return result.package_dir

    def verify(self, package: Path, trust_root: TrustRoot | None = None, *, now: datetime = NOW,
               allow_unsigned: bool = False) -> PackageVerification:
        return verify_package(package, trust_root or self.trust_root(), now=now, allow_unsigned=allow_unsigned)

    # --- mutations ---------------------------------------------------------------------------

    @staticmethod
    def flip_bit(path: Path, offset: int | None = None) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2 if offset is None else offset] ^= 0x01
        path.write_bytes(bytes(data))

    def sign_file(self, package: Path, name: str, key: Ed25519PrivateKey | None = None,
                  sig_name: str | None = None) -> None:
        data = (package / name).read_bytes()
        (package / (sig_name or f"{name}.sig.json")).write_bytes(
            sign_bytes(data, subject=name, private_key=key or self.key, signer="sim"))

    def rewrite(self, package: Path, name: str, data: bytes, key: Ed25519PrivateKey | None = None) -> None:
        """Replace ``name`` and re-sign it, checksums.txt and release-evidence.json consistently."""
        key = key or self.key
        (package / name).write_bytes(data)
        self.sign_file(package, name, key)
        provenance = f"{RUNTIME}.provenance.intoto.json"
        if name not in (provenance, "checksums.txt") and (package / provenance).is_file():
            statement = json.loads((package / provenance).read_bytes())
            for subject in statement.get("subject", []):
                if subject.get("name") == name:
                    subject["digest"]["sha256"] = hashlib.sha256(data).hexdigest()
            self.rewrite(package, provenance, (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode(), key)
        digests = parse_checksums((package / "checksums.txt").read_bytes()).as_dict()
        if name in digests:
            digests[name] = hashlib.sha256(data).hexdigest()
            (package / "checksums.txt").write_bytes(render_checksums(digests))
            self.sign_file(package, "checksums.txt", key)
        evidence = json.loads((package / "release-evidence.json").read_bytes())
        for artifact in evidence["artifacts"]:
            path = artifact["relative_path"]
            if (package / path).is_file():
                artifact["sha256"] = hashlib.sha256((package / path).read_bytes()).hexdigest()
                artifact["size_bytes"] = (package / path).stat().st_size
        self._write_evidence(package, evidence, key)

    def add_file(self, package: Path, name: str, data: bytes, kind: str) -> None:
        """Add a new signed file, listed in checksums.txt, release evidence and provenance."""
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_bytes(data)
        self.sign_file(package, name)
        digest = hashlib.sha256(data).hexdigest()
        evidence = json.loads((package / "release-evidence.json").read_bytes())
        evidence["artifacts"].append({"relative_path": name, "sha256": digest, "size_bytes": len(data), "kind": kind})
        body = (json.dumps(evidence, indent=2, sort_keys=True) + "\n").encode()
        (package / "release-evidence.json").write_bytes(body)
        provenance = f"{RUNTIME}.provenance.intoto.json"
        statement = json.loads((package / provenance).read_bytes())
        statement["subject"].append({"name": name, "digest": {"sha256": digest}})
        digests = parse_checksums((package / "checksums.txt").read_bytes()).as_dict()
        digests[name] = digest
        (package / "checksums.txt").write_bytes(render_checksums(digests))
        self.rewrite(package, provenance, (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode())

    def _write_evidence(self, package: Path, evidence: dict[str, Any], key: Ed25519PrivateKey) -> None:
        body = (json.dumps(evidence, indent=2, sort_keys=True) + "\n").encode()
        (package / "release-evidence.json").write_bytes(body)
        self.sign_file(package, "release-evidence.json", key)
        (package / "release-evidence.md").write_bytes(render_release_evidence_md(evidence))
        self.sign_file(package, "release-evidence.md", key)

    def rewrite_json(self, package: Path, name: str, change: Any, key: Ed25519PrivateKey | None = None) -> None:
        document = json.loads((package / name).read_bytes())
        change(document)
        self.rewrite(package, name, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(), key)

    def resign_everything(self, package: Path, key: Ed25519PrivateKey) -> None:
        for sig in list(package.rglob("*.sig.json")):
            subject = sig.relative_to(package).as_posix()[: -len(".sig.json")]
            sig.unlink()
            if (package / subject).is_file():
                self.sign_file(package, subject, key)

    @staticmethod
    def copy(package: Path, target: Path) -> Path:
        shutil.copytree(package, target)
        return target


def codes(result: PackageVerification) -> set[str]:
    return result.error_codes()


def family(result: PackageVerification, name: str) -> Any:
    return next(f for f in result.families if f.family == name)


__all__ = ["NOW", "ReleaseSimulator", "codes", "family", "os", "timedelta", "trusted"]
