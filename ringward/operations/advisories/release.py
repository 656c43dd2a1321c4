"""A release package as the advisories domain sees it: verified in full against the pinned trust
root by the release verify operation, with the digests an advisory links and the SBOM components
KEV matching reads."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from ringward.core import errors as error_module
from ringward.core.advisories.kev import Component
from ringward.core.advisories.record import DocumentLink, PackageDocument, PackageLink
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import InputError, SbomError, VerificationError
from ringward.core.release.package_format import BOOTSTRAP, CHECKSUMS, EVIDENCE_JSON, RuntimeFiles
from ringward.core.release.package_rules import runtime_of
from ringward.core.release.verification import PackageVerification
from ringward.core.trust.root import TrustRoot
from ringward.operations.common.files import walk_regular_files


@dataclass(frozen=True)
class AdvisoryRelease:
    package_dir: Path
    runtime: str
    version: str
    commit: str
    repository: str | None
    checksums_digest: str
    documents: Mapping[str, bytes]
    digests: Mapping[str, str]
    signature_files: tuple[str, ...]
    verification: PackageVerification

    @property
    def files(self) -> RuntimeFiles:
        return RuntimeFiles(self.runtime)

    def document_names(self) -> dict[PackageDocument, str]:
        files = self.files
        return {
            PackageDocument.CHECKSUMS: CHECKSUMS,
            PackageDocument.RELEASE_EVIDENCE: EVIDENCE_JSON,
            PackageDocument.PROVENANCE: files.provenance,
            PackageDocument.SBOM: files.sbom,
            PackageDocument.INSTALLER_METADATA: files.installers,
            PackageDocument.ENDPOINT_DEPLOYMENT: files.endpoint_deployment,
            PackageDocument.CHANNEL_MANIFEST: files.channels,
            PackageDocument.UPDATER_POLICY: files.updater_policy,
            PackageDocument.OFFLINE_BOOTSTRAP: BOOTSTRAP,
        }

    def document_links(self) -> dict[PackageDocument, DocumentLink]:
        out = {}
        for role, name in self.document_names().items():
            data = self.documents.get(name)
            if data is not None:
                out[role] = DocumentLink(name=name, sha256=hashlib.sha256(data).hexdigest())
        return out

    def link(self, now: datetime) -> PackageLink:
        return PackageLink(
            path=str(self.package_dir.absolute()), runtime=self.runtime, version=self.version, commit=self.commit,
            checksums_digest=self.checksums_digest, documents=self.document_links(),
            signature_files=self.signature_files, signers=tuple(self.verification.signers), verified_at=now,
        )

    def channel_names(self) -> list[str]:
        doc = loads_strict(self.documents[self.files.channels], source=self.files.channels)
        return sorted({str(c["channel"]) for c in doc.get("channels", []) if isinstance(c, dict) and "channel" in c})

    def components(self) -> list[Component]:
        """SBOM packages carrying a ``PACKAGE-MANAGER`` purl (the release's dependencies)."""
        name = self.files.sbom
        if name not in self.documents:
            raise SbomError(f"{self.package_dir}: {name} missing from the verified package")
        sbom = loads_strict(self.documents[name], source=name)
        out: list[Component] = []
        for package in sbom.get("packages", []):
            for ref in package.get("externalRefs", []) or []:
                if ref.get("referenceCategory") != "PACKAGE-MANAGER" or ref.get("referenceType") != "purl":
                    continue
                try:
                    purl = PackageURL.from_string(str(ref.get("referenceLocator")))
                except ValueError as exc:
                    raise SbomError(f"{name}: package {package.get('name')!r}: invalid purl: {exc}") from exc
                out.append(Component(name=str(package.get("name")),
                                     version=str(purl.version or package.get("versionInfo") or ""), purl=purl))
        return out


def load_release(package_dir: Path, root: TrustRoot, *, now: datetime) -> AdvisoryRelease:
    """Verify ``package_dir`` in full; raise its first error as its specific class.

    Raises:
        InputError: no such directory / not a directory.
        VerificationError (subclass): the package does not verify against ``root`` at ``now``.
    """
    from ringward.operations.release.verify import verify_directory

    if not package_dir.exists():
        raise InputError(f"--package {package_dir}: package directory does not exist")
    if not package_dir.is_dir():
        raise InputError(f"--package {package_dir}: is a file, expected a package directory")
    integrity, verification = verify_directory(package_dir, root, now=now)
    content = integrity.content
    if not verification.valid or content is None:
        for finding in verification.errors:
            cls = getattr(error_module, finding.error_type, VerificationError)
            if not (isinstance(cls, type) and issubclass(cls, VerificationError)):
                cls = VerificationError
            raise cls(f"release package {package_dir}: {finding.message}")
        raise VerificationError(f"release package {package_dir}: verification incomplete (a check family was skipped)")
    evidence: dict[str, Any] = loads_strict(content.documents[EVIDENCE_JSON], source=EVIDENCE_JSON)
    signatures = tuple(sorted(n for n in walk_regular_files(package_dir) if n.endswith(".sig.json")))
    return AdvisoryRelease(
        package_dir=package_dir, runtime=runtime_of(content), version=str(evidence["version"]),
        commit=str(evidence["commit"]), repository=evidence.get("repository"),
        checksums_digest="sha256:" + hashlib.sha256(content.documents[CHECKSUMS]).hexdigest(),
        documents=dict(content.documents), digests=dict(content.digests), signature_files=signatures,
        verification=verification,
    )
