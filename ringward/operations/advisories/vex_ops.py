"""``ringward vex create | validate | merge``, and OpenVEX documents stored with their release.

A document given ``--package`` (with ``--trust-root``) is stored with the release it speaks
about: the package is verified, every statement's products must name the release (its
``pkg:github/<repository>@<version>`` or ``pkg:golang/github.com/<repository>@v<version>``) or a
component of its verified SBOM (go-vex purl matching), and the document is kept under the
release's checksums digest with an ``openvex-document`` evidence record linking that digest (one
transaction). A document with an ``@id`` already stored for the release must carry a higher
``version`` when its content changed (the same version and content is a no-op).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from packageurl import PackageURL

from ringward.core.advisories.vex import (
    Justification,
    VexDocument,
    VexInvalidError,
    VexStatus,
    build_document,
    build_statement,
    document_problems,
    merge,
    parse_vex,
    purl_matches,
)
from ringward.core.common.jsonio import dumps_canonical, dumps_document
from ringward.core.errors import BindingMismatchError, InputError, OutputExistsError, VersionConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.advisories.release import AdvisoryRelease, load_release
from ringward.operations.common.files import atomic_write, check_output_parent, read_capped
from ringward.store.advisories.state import VEX_NAMESPACE

if TYPE_CHECKING:
    from ringward.store import Store

KIND_VEX: Final = "openvex-document"
MAX_VEX_FILE: Final = 8 * 1024 * 1024


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"{path}: OpenVEX file does not exist")
    return read_capped(path, MAX_VEX_FILE, source=str(path))


def _write(output: Path, doc: VexDocument) -> bytes:
    if output.exists():
        raise OutputExistsError(f"--output {output}: exists; refusing to overwrite")
    check_output_parent(output, option="--output")
    data = dumps_document(doc.document())
    atomic_write(output, data, overwrite=False)
    return data


def _checked(doc: VexDocument, now: datetime) -> VexDocument:
    problems, parsed = document_problems(doc.document(), now=now)
    if problems or parsed is None:  # pragma: no cover - what we build always conforms; guard the exports
        raise VexInvalidError(f"generated OpenVEX document is invalid: {problems[0]}", problems)
    return parsed


def release_identities(release: AdvisoryRelease) -> list[PackageURL]:
    """The purls a statement may name for ``release``: the release itself and its SBOM components."""
    out = [c.purl for c in release.components()]
    if release.repository and "/" in release.repository:
        owner, name = release.repository.split("/", 1)
        out.append(PackageURL(type="github", namespace=owner, name=name, version=release.version))
        out.append(PackageURL(type="golang", namespace=f"github.com/{owner}", name=name, version=f"v{release.version}"))
    return out


def _check_binding(doc: VexDocument, release: AdvisoryRelease) -> None:
    identities = release_identities(release)
    for index, statement in enumerate(doc.statements):
        for product in statement.products or ():
            purl = product.purl()
            if purl is None:
                raise BindingMismatchError(f"statements[{index}]: product {product.id!r} has no purl; a statement "
                                           "stored with a release must name it by purl")
            if not any(purl_matches(PackageURL.from_string(purl), ident) for ident in identities):
                raise BindingMismatchError(
                    f"statements[{index}]: product {purl} is neither release {release.version} nor a component of "
                    f"its verified SBOM")


def store_with_release(store: Store, doc: VexDocument, *, package: Path, trust_root: Path, actor: str,
                       now: datetime) -> dict[str, Any]:
    from ringward.operations.advisories.state_ops import repo
    from ringward.operations.promotion.channel_ops import load_trust_root_file

    release = load_release(package, load_trust_root_file(trust_root), now=now)
    _check_binding(doc, release)
    document = doc.document()
    digest = hashlib.sha256(dumps_canonical(document)).hexdigest()
    state = repo(store)
    entry = state.get(VEX_NAMESPACE, release.checksums_digest)
    stored: list[dict[str, Any]] = list(entry.value["documents"]) if entry is not None else []
    for existing in stored:
        if existing["id"] != doc.id:
            continue
        if existing["sha256"] == digest:
            return {"stored": False, "reason": "already stored", "release_digest": release.checksums_digest,
                    "document_sha256": digest}
        if doc.version <= int(existing["version"]):
            raise VersionConflictError(
                f"OpenVEX {doc.id}: version {doc.version} changes the content of stored version "
                f"{existing['version']}; a changed document needs a higher version")
    stored = [d for d in stored if d["id"] != doc.id] + [
        {"id": doc.id, "version": doc.version, "sha256": digest, "document": document}]
    draft = EvidenceDraft(
        kind=KIND_VEX, actor=actor,
        subject=EvidenceSubject(release_version=release.version, runtime=release.runtime, status="stored",
                                success=True),
        payload={"schema_version": "ringward.openvex-document-record.v1", "release_digest": release.checksums_digest,
                 "package_dir": str(package), "vex_id": doc.id, "vex_version": doc.version,
                 "document_sha256": digest,
                 "statements": [{"vulnerability": s.vulnerability.name, "status": s.status.value,
                                 "products": [p.key() for p in s.products or ()]} for s in doc.statements],
                 "document": document},
    )
    (record,) = state.decide([(VEX_NAMESPACE, release.checksums_digest, {"documents": stored},
                               0 if entry is None else entry.version)], [draft], actor=actor, now=now)
    return {"stored": True, "release_digest": release.checksums_digest, "release_version": release.version,
            "document_sha256": digest, "evidence_id": record.id}


def stored_documents(store: Store, release_digest: str) -> list[VexDocument]:
    from ringward.operations.advisories.state_ops import repo

    entry = repo(store).get(VEX_NAMESPACE, release_digest)
    if entry is None:
        return []
    return [VexDocument.model_validate(d["document"]) for d in entry.value["documents"]]


def create_vex(
    store: Store | None, *, vulnerability: str, products: Sequence[str], status: str, author: str, output: Path,
    now: datetime, actor: str, justification: str | None = None, impact_statement: str | None = None,
    action_statement: str | None = None, aliases: Sequence[str] = (), status_notes: str | None = None,
    doc_id: str | None = None, role: str | None = None, package: Path | None = None, trust_root: Path | None = None,
) -> dict[str, Any]:
    try:
        parsed_status = VexStatus(status)
    except ValueError as exc:
        raise InputError(f"--status: expected one of {', '.join(s.value for s in VexStatus)}, found {status!r}") \
            from exc
    try:
        parsed_justification = Justification(justification) if justification is not None else None
    except ValueError as exc:
        raise InputError(f"--justification: expected one of {', '.join(j.value for j in Justification)}, "
                         f"found {justification!r}") from exc
    if (package is None) != (trust_root is None):
        raise InputError("--package and --trust-root go together (a stored document's release is verified)")
    statement = build_statement(vulnerability=vulnerability, products=products, status=parsed_status, timestamp=now,
                                aliases=aliases, justification=parsed_justification, impact_statement=impact_statement,
                                action_statement=action_statement, status_notes=status_notes)
    doc = _checked(build_document([statement], author=author, timestamp=now, doc_id=doc_id, role=role), now)
    if output.exists():
        raise OutputExistsError(f"--output {output}: exists; refusing to overwrite")
    result: dict[str, Any] = {"id": doc.id, "output": str(output), "status": parsed_status.value}
    if package is not None and trust_root is not None and store is not None:
        result["release"] = store_with_release(store, doc, package=package, trust_root=trust_root, actor=actor,
                                               now=now)
    _write(output, doc)
    return result


def validate_vex(path: Path, *, now: datetime, store: Store | None = None, package: Path | None = None,
                 trust_root: Path | None = None, actor: str = "ringward") -> dict[str, Any]:
    """Validate strictly (raises VexInvalidError with every problem); with ``package`` also store it."""
    doc = parse_vex(_read(path), source=str(path), now=now)
    result: dict[str, Any] = {"valid": True, "id": doc.id, "version": doc.version, "statements": len(doc.statements)}
    if package is not None:
        if trust_root is None or store is None:
            raise InputError("--package needs --trust-root")
        result["release"] = store_with_release(store, doc, package=package, trust_root=trust_root, actor=actor,
                                               now=now)
    return result


def merge_vex(paths: Sequence[Path], *, author: str, output: Path, now: datetime, doc_id: str | None = None
              ) -> dict[str, Any]:
    if len(paths) < 1:
        raise InputError("vex merge: give at least one document")
    docs = [parse_vex(_read(p), source=str(p), now=now) for p in paths]
    merged = _checked(merge(docs, author=author, now=now, doc_id=doc_id), now)
    data = _write(output, merged)
    return {"id": merged.id, "output": str(output), "statements": len(merged.statements), "inputs": len(docs),
            "sha256": hashlib.sha256(data).hexdigest()}
