"""The keyless-attestation layer of ``verify-package``: Sigstore bundles verified offline.

Optional and additive: with ``--sigstore-trusted-root FILE --sigstore-identity ID --sigstore-issuer URL``
every binary of the package (``bin/<name>``) is checked against its Sigstore bundle,
``github-attestations/<name>.sigstore-bundle.json`` (the reference system's directory and suffix), with
sigstore-python's ``Verifier`` built from the supplied trusted root only (no TUF refresh, no network) and
an ``Identity(identity=..., issuer=...)`` policy. The artifact handed to sigstore is the SHA-256 the
integrity family already verified against the signed ``checksums.txt``: the attestation speaks about the
exact bytes of the package, and a binary that failed integrity is never attested.

Both bundle kinds sigstore produces are accepted: a message signature over the binary (``sigstore sign``,
``cosign sign-blob``), and a DSSE attestation (GitHub artifact attestations): an in-toto Statement whose
signed subject list must name the binary's SHA-256 (matched by digest; only the verified payload is
parsed). Other DSSE payload types fail.

A bundle may be listed in ``checksums.txt`` (then its bytes are signature-checked like any document
before they are parsed) or be added after packaging, unlisted (CI attests after the package is signed):
with the layer on, an unlisted bundle named after a listed binary is allowed, because it authenticates
itself under the Sigstore trusted root. Without the layer nothing changes (an unlisted bundle is an
unlisted file under the ringward profile, and ignored under the reference profile).

Outcomes per binary, in the ``keyless-attestation`` family and the result's ``keyless_attestation``
section: ``verified`` (identity, issuer, log index, integrated time), ``missing`` (a warning; an error
with ``--require-sigstore``), ``failed`` (wrong identity or issuer, signature or digest mismatch,
certificate not chaining to the trusted root, log proof invalid, malformed bundle: each one line), and
``not-checked`` (the binary or its listed bundle failed integrity; the package is invalid anyway).

sigstore is imported only when the layer is asked for, so plain ``verify-package`` never loads it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import (
    AttestationError,
    AttestationIdentityError,
    ConfigError,
    InputError,
    MalformedAttestationError,
    MissingAttestationError,
    VerificationError,
)
from ringward.core.release.package_format import BIN_DIR
from ringward.core.release.verification import FamilyCollector, FamilyResult, PackageVerification

if TYPE_CHECKING:
    from ringward.core.release.package_rules import VerifiedContent
    from ringward.core.trust.root import TrustRoot
    from ringward.operations.release.progress import Progress
    from ringward.operations.release.verify import PackageSource

KEYLESS_FAMILY = "keyless-attestation"
#: the reference system's attestation directory and bundle suffix (cavra-spec §2.11)
BUNDLE_DIR = "github-attestations"
BUNDLE_SUFFIX = ".sigstore-bundle.json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
#: a real bundle is a few KiB; a trusted root a few tens
MAX_BUNDLE_BYTES = 1024 * 1024
MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024
MAX_IDENTITY_CHARS = 1024
#: the OIDC issuer extensions Fulcio writes (raw bytes, and a DER UTF8String)
_ISSUER_OID = "1.3.6.1.4.1.57264.1.1"
_ISSUER_V2_OID = "1.3.6.1.4.1.57264.1.8"
_OTHERNAME_OID = "1.3.6.1.4.1.57264.1.7"
_REASON_CHARS = 240
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
#: sigstore messages that embed whole objects, and what to say instead
_PLAIN_REASONS = (
    ("inclusion proof contains invalid root hash", "inclusion proof does not lead to the proof's root hash"),
)

OPTION_NAMES = ("--sigstore-trusted-root", "--sigstore-identity", "--sigstore-issuer")


def bundle_path_for(binary: str) -> str:
    """``bin/rt_1.2.3_linux_amd64`` -> ``github-attestations/rt_1.2.3_linux_amd64.sigstore-bundle.json``."""
    return f"{BUNDLE_DIR}/{PurePosixPath(binary).name}{BUNDLE_SUFFIX}"


def package_binaries(listed: Any) -> list[str]:
    """The binaries of a package: files directly under ``bin/`` in the signed manifest."""
    prefix = f"{BIN_DIR}/"
    return sorted(n for n in listed if n.startswith(prefix) and "/" not in n[len(prefix):])


def keyless_bundle_names(listed: Any) -> set[str]:
    """The bundle names the layer reads: one per listed binary."""
    return {bundle_path_for(name) for name in package_binaries(listed)}


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeylessOptions:
    """What the caller asked of the layer (validated; the trusted root not read yet)."""

    trusted_root: str
    identity: str
    issuer: str
    required: bool = False

    def as_params(self) -> dict[str, Any]:
        """The keyword parameters of ``run_verify_package`` and the verify-package flow."""
        return {"sigstore_trusted_root": self.trusted_root, "sigstore_identity": self.identity,
                "sigstore_issuer": self.issuer, "require_sigstore": self.required}


def keyless_options(trusted_root: str | Path | None, identity: str | None, issuer: str | None,
                    required: bool = False) -> KeylessOptions | None:
    """Validate the layer's options: none of them (the layer is off), or all three. ``InputError``
    (exit 2) names what is missing or malformed."""
    given = {"--sigstore-trusted-root": trusted_root, "--sigstore-identity": identity,
             "--sigstore-issuer": issuer}
    present = [name for name, value in given.items() if value not in (None, "")]
    if not present:
        if required:
            raise InputError("--require-sigstore: needs --sigstore-trusted-root, --sigstore-identity and "
                             "--sigstore-issuer")
        return None
    missing = [name for name in OPTION_NAMES if name not in present]
    if missing:
        raise InputError(f"{', '.join(missing)}: required with {', '.join(present)} (the keyless-attestation "
                         "layer needs a Sigstore trusted root, a certificate identity and an OIDC issuer)")
    assert trusted_root is not None and identity is not None and issuer is not None
    if len(identity) > MAX_IDENTITY_CHARS or _CONTROL.search(identity):
        raise InputError(f"--sigstore-identity: expected one certificate identity (an e-mail address or URI "
                         f"without spaces, at most {MAX_IDENTITY_CHARS} characters), found {identity[:80]!r}")
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.netloc or _CONTROL.search(issuer) \
            or len(issuer) > MAX_IDENTITY_CHARS:
        raise InputError(f"--sigstore-issuer: expected the OIDC issuer URL (e.g. "
                         f"https://token.actions.githubusercontent.com), found {issuer[:80]!r}")
    return KeylessOptions(str(trusted_root), identity, issuer, bool(required))


# --- the loaded layer ---------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    """A library error as one short line: pydantic's first validation error, else the message."""
    from pydantic import ValidationError

    cause = exc if isinstance(exc, ValidationError) else exc.__cause__ or exc.__context__
    if isinstance(cause, ValidationError):
        errors = cause.errors()
        first = errors[0] if errors else {"loc": (), "msg": str(cause)}
        where = ".".join(str(part) for part in first.get("loc", ())) or "document"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{where}: {first.get('msg', '')}{more}"[:_REASON_CHARS]
    text = " ".join(str(exc).split()) or type(exc).__name__
    for marker, plain in _PLAIN_REASONS:
        if marker in text:  # sigstore's own text dumps the whole proof object
            text = text[: text.index(marker)] + plain
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _quiet_sigstore() -> None:
    """sigstore logs warnings (an unloadable key, a root CA inside a bundle); with no logging
    configured Python would print them to stderr around our one-line output. Route them to the
    application's handlers only."""
    logger = logging.getLogger("sigstore")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


@dataclass
class KeylessLayer:
    """The options plus the Sigstore trusted root read from exactly ``trusted_root_bytes``."""

    options: KeylessOptions
    trusted_root_bytes: bytes
    verifier: Any = field(repr=False)

    @property
    def trusted_root_sha256(self) -> str:
        return hashlib.sha256(self.trusted_root_bytes).hexdigest()


def load_keyless_layer(options: KeylessOptions) -> KeylessLayer:
    """Read the Sigstore trusted root (strict JSON, capped) and build sigstore's offline ``Verifier``
    from it. Every problem is a ``ConfigError`` naming the file (exit 2)."""
    from ringward.operations.common.files import read_capped

    path = options.trusted_root
    try:
        data = read_capped(Path(path), MAX_TRUSTED_ROOT_BYTES, source=path)
    except InputError as exc:
        raise ConfigError(f"--sigstore-trusted-root {exc}") from exc
    try:
        document = loads_strict(data, source=path, max_bytes=MAX_TRUSTED_ROOT_BYTES)
    except VerificationError as exc:
        raise ConfigError(f"--sigstore-trusted-root {exc}") from exc
    media_type = document.get("mediaType") if isinstance(document, dict) else None
    if media_type != TRUSTED_ROOT_MEDIA_TYPE:
        raise ConfigError(f"--sigstore-trusted-root {path}: expected a Sigstore trusted root (mediaType "
                          f"{TRUSTED_ROOT_MEDIA_TYPE!r}), found mediaType {media_type!r}")
    _quiet_sigstore()
    from sigstore.models import TrustedRoot
    from sigstore.verify import Verifier
    from sigstore_models.trustroot import v1 as trustroot_v1

    try:
        # the bytes just read and checked, not a second read of the path
        trusted_root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(data))
        # fail here, once, rather than on every bundle: each part verification needs
        trusted_root.get_fulcio_certs()
        from sigstore._internal.trust import KeyringPurpose

        trusted_root.rekor_keyring(KeyringPurpose.VERIFY)
        trusted_root.ct_keyring(KeyringPurpose.VERIFY)
        verifier = Verifier(trusted_root=trusted_root)
    except Exception as exc:
        raise ConfigError(f"--sigstore-trusted-root {path}: not a usable Sigstore trusted root: "
                          f"{_one_line(exc)}") from exc
    return KeylessLayer(options, data, verifier)


# --- one bundle ---------------------------------------------------------------------------------


class _RecordingPolicy:
    """sigstore's identity policy, noting whether it was the check that failed (sigstore runs it
    after the certificate chain and SCT, before the log proof and the signature)."""

    def __init__(self, identity: str, issuer: str) -> None:
        from sigstore.verify.policy import Identity

        self._policy = Identity(identity=identity, issuer=issuer)
        self.failed = False

    def verify(self, cert: Any) -> None:
        try:
            self._policy.verify(cert)
        except Exception:
            self.failed = True
            raise


def _certificate_claims(cert: Any) -> tuple[list[str], str | None]:
    """The identities (SANs) and the OIDC issuer a Fulcio certificate carries, for reporting."""
    from cryptography import x509

    identities: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        identities += [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
        identities += [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
        identities += [o.value.decode(errors="replace") for o in san.get_values_for_type(x509.OtherName)
                       if o.type_id.dotted_string == _OTHERNAME_OID]
    except x509.ExtensionNotFound:
        pass
    issuer = None
    for ext in cert.extensions:
        if ext.oid.dotted_string == _ISSUER_OID and isinstance(ext.value, x509.UnrecognizedExtension):
            issuer = ext.value.value.decode(errors="replace")
    return identities, issuer


def _identity_message(bundle_name: str, cert: Any, options: KeylessOptions) -> str:
    identities, issuer = _certificate_claims(cert)
    problems = []
    if issuer != options.issuer:
        problems.append(f"OIDC issuer {issuer!r} is not --sigstore-issuer {options.issuer!r}")
    if options.identity not in identities:
        shown = ", ".join(repr(i) for i in identities[:3]) or "none"
        problems.append(f"identity {shown} is not --sigstore-identity {options.identity!r}")
    if not problems:
        problems.append("certificate identity policy not met")
    return f"{bundle_name}: signed by another identity: {'; '.join(problems)}"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _log_details(document: dict[str, Any]) -> dict[str, Any]:
    """Log index, log id and integrated time from the bundle's (single, just verified) log entry."""
    entry = document["verificationMaterial"]["tlogEntries"][0]
    integrated = _int(entry.get("integratedTime"))
    try:
        log_id = base64.b64decode(entry.get("logId", {}).get("keyId", ""), validate=True).hex()
    except (ValueError, TypeError):
        log_id = None
    return {
        "log_index": _int(entry.get("logIndex")),
        "log_id": log_id,
        "integrated_time": datetime.fromtimestamp(integrated, UTC).isoformat().replace("+00:00", "Z")
        if integrated else None,
    }


def verify_bundle(layer: KeylessLayer, bundle_name: str, data: bytes, binary: str, sha256_hex: str) \
        -> dict[str, Any]:
    """Verify one bundle over the verified digest of ``binary``; the details on success, else an
    ``AttestationError`` subclass with a one-line message."""
    from cryptography.hazmat.primitives import serialization

    try:
        document = loads_strict(data, source=bundle_name, max_bytes=MAX_BUNDLE_BYTES)
    except VerificationError as exc:
        raise MalformedAttestationError(str(exc)) from exc
    if not isinstance(document, dict):
        raise MalformedAttestationError(f"{bundle_name}: expected a Sigstore bundle (a JSON object), found "
                                        f"{type(document).__name__}")
    from sigstore.errors import CertValidationError
    from sigstore.errors import VerificationError as SigstoreVerificationError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore_models.common.v1 import HashAlgorithm

    try:
        bundle = Bundle.from_json(data)
    except Exception as exc:
        raise MalformedAttestationError(f"{bundle_name}: not a valid Sigstore bundle: {_one_line(exc)}") from exc
    dsse = document.get("dsseEnvelope") is not None
    payload_type, payload = "", b""
    policy = _RecordingPolicy(layer.options.identity, layer.options.issuer)
    artifact = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(sha256_hex))
    try:
        if dsse:
            payload_type, payload = layer.verifier.verify_dsse(bundle, policy)
        else:
            layer.verifier.verify_artifact(artifact, bundle, policy)
    except Exception as exc:
        if policy.failed:
            raise AttestationIdentityError(_identity_message(bundle_name, bundle.signing_certificate,
                                                             layer.options)) from exc
        if isinstance(exc, CertValidationError):
            raise AttestationError(f"{bundle_name}: signing certificate does not chain to the Sigstore trusted "
                                   f"root at signing time ({_one_line(exc)})") from exc
        if isinstance(exc, SigstoreVerificationError):
            raise AttestationError(f"{bundle_name}: does not verify for {binary}: {_one_line(exc)}") from exc
        raise AttestationError(f"{bundle_name}: does not verify for {binary}: {type(exc).__name__}: "
                               f"{_one_line(exc)}") from exc
    statement = _attested_subject(bundle_name, binary, sha256_hex, payload_type, payload) if dsse else {}
    cert = bundle.signing_certificate
    der = cert.public_bytes(serialization.Encoding.DER)
    _, issuer = _certificate_claims(cert)
    return {
        "kind": "dsse-statement" if dsse else "message-signature",
        "identity": layer.options.identity,
        "issuer": issuer,
        **_log_details(document),
        "certificate_sha256": hashlib.sha256(der).hexdigest(),
        "certificate_not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "media_type": document.get("mediaType"),
        **statement,
    }


def _attested_subject(bundle_name: str, binary: str, sha256_hex: str, payload_type: str, payload: bytes) \
        -> dict[str, Any]:
    """A DSSE bundle (an attestation, as GitHub's): its signature is over the envelope, so the binding
    to the binary is the signed in-toto Statement naming the binary's SHA-256 as a subject (matched by
    digest, as in-toto specifies). Only the verified payload bytes are parsed, strictly."""
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise AttestationError(f"{bundle_name}: DSSE payload type {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    try:
        statement = loads_strict(payload, source=f"{bundle_name} (attested statement)", max_bytes=MAX_BUNDLE_BYTES)
    except VerificationError as exc:
        raise MalformedAttestationError(str(exc)) from exc
    kind = statement.get("_type") if isinstance(statement, dict) else None
    if kind not in STATEMENT_TYPES:
        raise MalformedAttestationError(f"{bundle_name}: attested statement _type {kind!r}, expected "
                                        f"{STATEMENT_TYPES[0]!r}")
    subjects = statement.get("subject")
    names = [s.get("name") for s in subjects if isinstance(s, dict) and isinstance(s.get("digest"), dict)
             and str(s["digest"].get("sha256", "")).lower() == sha256_hex] if isinstance(subjects, list) else []
    if not names:
        raise AttestationError(f"{bundle_name}: the attested statement names no subject with the sha256 of {binary} "
                               f"({sha256_hex[:16]}...)")
    predicate = statement.get("predicateType")
    return {"subject_name": names[0] if isinstance(names[0], str) else None,
            "predicate_type": predicate if isinstance(predicate, str) else None}


# --- the family ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeylessOutcome:
    """The ``keyless-attestation`` family, the result section and the files kept as evidence."""

    family: FamilyResult
    report: dict[str, Any]
    evidence_files: dict[str, bytes]

    @property
    def extra(self) -> dict[str, Any]:
        """What the layer adds to the verification result dict."""
        return {"keyless_attestation": self.report}


def _report(layer: KeylessLayer, attestations: list[dict[str, Any]], status: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for item in attestations:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return {
        "family": KEYLESS_FAMILY,
        "status": status,
        "trusted_root": {"path": layer.options.trusted_root, "sha256": layer.trusted_root_sha256},
        "identity": layer.options.identity,
        "issuer": layer.options.issuer,
        "required": layer.options.required,
        "counts": counts,
        "attestations": attestations,
    }


def _evidence_files(layer: KeylessLayer, bundles: dict[str, bytes]) -> dict[str, bytes]:
    files = {"keyless/trusted_root.json": layer.trusted_root_bytes}
    for name, data in bundles.items():
        files[f"keyless/{PurePosixPath(name).name}"] = data
    return files


def check_keyless_attestations(content: VerifiedContent | None, source: PackageSource,
                               layer: KeylessLayer) -> KeylessOutcome:
    """Run the layer over a package whose integrity scan produced ``content``."""
    if content is None:
        reason = "integrity and signatures failed; no verified binary to attest"
        family = FamilyResult(KEYLESS_FAMILY, "skipped", (), (), (), reason)
        return KeylessOutcome(family, _report(layer, [], "skipped"), _evidence_files(layer, {}))
    c = FamilyCollector(KEYLESS_FAMILY)
    listing = source.listing()
    listed = content.listed()
    attestations: list[dict[str, Any]] = []
    read: dict[str, bytes] = {}
    for binary in package_binaries(listed):
        name = bundle_path_for(binary)
        item: dict[str, Any] = {"binary": binary, "status": "pending", "bundle": name, "bundle_signed": name in listed}
        attestations.append(item)
        if binary in content.failed or binary not in content.digests:
            item.update(status="not-checked", reason="the binary failed integrity; it is never attested")
            c.warn(f"{binary}: keyless attestation not checked (the binary failed integrity)")
            continue
        if name not in listing:
            reason = f"no Sigstore bundle {name}"
            item.update(status="missing", reason=reason)
            if layer.options.required:
                c.fail(MissingAttestationError(f"{binary}: {reason} (--require-sigstore)"))
            else:
                c.warn(f"{binary}: keyless attestation missing ({name} absent)")
            continue
        try:
            if name in listed:
                if name in content.failed or name not in content.documents:
                    item.update(status="not-checked", reason="the listed bundle failed integrity")
                    c.warn(f"{name}: keyless attestation not checked (the bundle failed integrity)")
                    continue
                data = content.documents[name]  # signature-checked bytes
            else:
                data = source.read_small(name, MAX_BUNDLE_BYTES)
            read[name] = data
            item["bundle_sha256"] = hashlib.sha256(data).hexdigest()
            item.update(verify_bundle(layer, name, data, binary, content.digests[binary]))
            item["status"] = "verified"
            c.checked.append(binary)
        except AttestationError as exc:
            item.update(status="failed", code=exc.code, reason=exc.message)
            c.fail(exc)
        except VerificationError as exc:  # the bundle could not be read (too large, vanished)
            error = MalformedAttestationError(str(exc))
            item.update(status="failed", code=error.code, reason=error.message)
            c.fail(error)
    family = c.result()
    return KeylessOutcome(family, _report(layer, attestations, family.status), _evidence_files(layer, read))


def verify_package_with_keyless(
    package_dir: Path,
    trust_root: TrustRoot,
    layer: KeylessLayer,
    *,
    now: datetime,
    allow_unsigned: bool = False,
    profile: str = "ringward",
    progress: Progress | None = None,
) -> tuple[PackageVerification, KeylessOutcome]:
    """``verify_package`` plus the keyless-attestation family (after the document families)."""
    from ringward.operations.release.verify import (
        DirectorySource,
        prefetch_spdx,
        resolve_profile,
        run_families,
        scan_integrity,
        summarize,
    )

    prefetch_spdx()
    source = DirectorySource(package_dir)
    choice = resolve_profile(source, profile)
    integrity = scan_integrity(source, trust_root, now=now, allow_unsigned=allow_unsigned, profile=choice.profile,
                               progress=progress, keyless_bundles=True)
    outcome = check_keyless_attestations(integrity.content, source, layer)
    families = [*run_families(integrity.content), outcome.family]
    return summarize(str(package_dir), integrity, families, choice), outcome


__all__ = [
    "BUNDLE_DIR",
    "BUNDLE_SUFFIX",
    "KEYLESS_FAMILY",
    "KeylessLayer",
    "KeylessOptions",
    "KeylessOutcome",
    "bundle_path_for",
    "check_keyless_attestations",
    "keyless_bundle_names",
    "keyless_options",
    "load_keyless_layer",
    "verify_bundle",
    "verify_package_with_keyless",
]
