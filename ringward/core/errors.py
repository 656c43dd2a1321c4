"""One exception tree for Ringward, split by whose fault an error is.

- ``InputError``: the caller gave us something unusable (missing file, malformed option, bad
  config). CLI exit code 2.
- ``VerificationError``: the thing being verified is not what it claims to be (tampered,
  unsigned, untrusted, rolled back). CLI exit code 1.
- ``StateError``: the request is well-formed but the current state forbids it (approval already
  decided, expired, consumed). CLI exit code 1.
- ``TransportError``: a remote system could not be reached or answered in a retryable way.

Messages name the file or field and say what was observed against what was expected.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError


class RingwardError(Exception):
    """Root of every error Ringward raises on purpose."""

    exit_code: ClassVar[int] = 1
    #: stable machine-readable code used in ``--json`` output and evidence
    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- the caller's fault ------------------------------------------------------------------------


class InputError(RingwardError):
    """Bad input or usage: a file, option or config the caller supplied is unusable."""

    exit_code = 2
    code = "bad-input"


class ConfigError(InputError):
    """A configuration file (trust root, connectors, policies) is invalid."""

    code = "bad-config"


class KeyMaterialError(InputError):
    """A key file or key value cannot be used (wrong type, encrypted, small-order, ...)."""

    code = "bad-key"


class OutputExistsError(InputError):
    """Refusing to overwrite an existing output."""

    code = "output-exists"


# --- the artifact's fault ----------------------------------------------------------------------


class VerificationError(RingwardError):
    """The thing being verified failed a check."""

    exit_code = 1
    code = "verification-failed"


class MalformedDocumentError(VerificationError):
    """A package document cannot be parsed strictly (bad JSON, duplicate keys, NaN, schema)."""

    code = "malformed-document"


class MalformedManifestError(MalformedDocumentError):
    """``checksums.txt`` violates the strict grammar."""

    code = "malformed-manifest"


class WeakDigestError(MalformedManifestError):
    """A digest is not SHA-256 (for example a 40-hex SHA-1)."""

    code = "weak-digest"


class UnsafePathError(VerificationError):
    """A path escapes its root or is not a safe relative POSIX name."""

    code = "unsafe-path"


class MissingFileError(VerificationError):
    """A listed or required file is absent."""

    code = "missing-file"


class UnlistedFileError(VerificationError):
    """A file is present but not listed in the signed manifest."""

    code = "unlisted-file"


class DigestMismatchError(VerificationError):
    """Observed SHA-256 differs from the signed one."""

    code = "digest-mismatch"


class SizeMismatchError(VerificationError):
    """Observed size differs from the signed one."""

    code = "size-mismatch"


class SignatureError(VerificationError):
    """A signature is missing, malformed or does not verify."""

    code = "signature-invalid"


class MissingSignatureError(SignatureError):
    code = "signature-missing"


class MalformedSignatureError(SignatureError):
    code = "signature-malformed"


class UntrustedKeyError(SignatureError):
    """A signature verifies only under a key the trust root does not pin as active."""

    code = "untrusted-key"


class ThresholdNotMetError(SignatureError):
    """Fewer distinct trusted keys signed than the role's threshold requires."""

    code = "threshold-not-met"


class UnsignedPackageError(SignatureError):
    """The package is an unsigned dry run."""

    code = "unsigned-package"


class WebhookSignatureError(SignatureError):
    """A webhook message's signature does not verify, or its timestamp is outside the tolerance."""

    code = "webhook-signature-invalid"


class BindingMismatchError(VerificationError):
    """Documents are not bound to the same release (mix-and-match)."""

    code = "binding-mismatch"


class MetadataMismatchError(VerificationError):
    """Installer / deployment / channel metadata disagrees with the signed facts."""

    code = "metadata-mismatch"


class ProvenanceError(VerificationError):
    """The in-toto / SLSA provenance statement is unsupported or disagrees with expectations."""

    code = "provenance-mismatch"


class UntrustedBuilderError(ProvenanceError):
    code = "untrusted-builder"


class AttestationError(VerificationError):
    """A keyless (Sigstore) attestation does not verify: certificate chain, SCT, log proof, signature."""

    code = "attestation-invalid"


class MissingAttestationError(AttestationError):
    """A binary has no keyless attestation where one is required."""

    code = "attestation-missing"


class MalformedAttestationError(AttestationError):
    """A keyless attestation bundle cannot be parsed (bad JSON, not a Sigstore bundle)."""

    code = "attestation-malformed"


class AttestationIdentityError(AttestationError):
    """A keyless attestation was made by another certificate identity or OIDC issuer than required."""

    code = "attestation-identity-mismatch"


class SbomError(VerificationError):
    """The SBOM is invalid or inconsistent with the binaries."""

    code = "sbom-invalid"


class UnsafeArchiveError(VerificationError):
    """A zip member is unsafe (traversal, link, duplicate, overlap, encryption, ...)."""

    code = "unsafe-archive"


class ArchiveLimitError(UnsafeArchiveError):
    """A zip exceeds a count / size / ratio cap."""

    code = "archive-limit"


class RollbackError(VerificationError):
    """A candidate version is lower than the previous or persisted one."""

    code = "rollback-rejected"


class VersionConflictError(VerificationError):
    """The same version exists with different bytes, or a version string is not canonical."""

    code = "version-conflict"


class SmokeTestError(VerificationError):
    """An installer smoke check failed."""

    code = "smoke-failed"


class EvidenceIntegrityError(VerificationError):
    """The evidence chain or an evidence file is broken."""

    code = "evidence-broken"


# --- the state's fault ---------------------------------------------------------------------------


class StateError(RingwardError):
    """The request is well-formed but the current state forbids it."""

    exit_code = 1
    code = "state-conflict"


class NotFoundError(StateError):
    code = "not-found"


class ChannelHeldError(StateError):
    """The release channel is on hold; nothing is promoted, exported or executed on it."""

    code = "channel-held"


class YankedReleaseError(StateError):
    """A yanked release version is never promoted, exported or published again."""

    code = "release-yanked"


class PromotionWindowError(StateError):
    """The action falls outside every allow window of its target, or inside a freeze."""

    code = "window-closed"


class ExecutionReplayError(StateError):
    """An execution, export or rollback was already recorded for this approval or execution."""

    code = "already-executed"


# --- the transport's fault -----------------------------------------------------------------------


class TransportError(RingwardError):
    """A remote system failed in a way that retrying may fix."""

    exit_code = 1
    code = "transport-failed"


# --- connectors ---


class ConnectorConfigError(ConfigError):
    """The connector configuration is invalid; ``problems`` lists every ``path: message``."""

    code = "bad-connector-config"

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class SecretReferenceError(ConfigError):
    """A secret reference (``env:NAME`` / ``prefect-secret:NAME``) cannot be resolved."""

    code = "secret-unresolved"


class ConnectorEventError(InputError):
    """An event file is not a valid ``ringward.connector.event.v1`` (or reference) event."""

    code = "bad-event"


class DeliveryFailedError(TransportError):
    """At least one destination did not accept the event (final or after the time budget)."""

    code = "delivery-failed"


class DeliveryRetryableError(DeliveryFailedError):
    """A delivery failed in a way that retrying later can fix (408/429/5xx, timeout, refused)."""

    code = "delivery-retryable"


# --- store / approvals / API ---


class StoreSchemaError(StateError):
    """The database schema is at a revision this Ringward does not know (newer, or foreign)."""

    code = "store-schema"


class StoreConflictError(StateError):
    """A compare-and-set on stored state lost: the value changed since it was read."""

    code = "store-conflict"


class EvidenceNotFoundError(NotFoundError):
    code = "evidence-not-found"


class ApprovalNotFoundError(NotFoundError):
    code = "approval-not-found"


class TokenNotFoundError(NotFoundError):
    code = "token-not-found"


class ApprovalStateError(StateError):
    """The approval's state forbids the transition (already decided, not approved, ...)."""

    code = "approval-state"


class ApprovalExpiredError(ApprovalStateError):
    """The approval's ``expires_at`` has passed; it can be neither decided nor used."""

    code = "approval-expired"


class ApprovalConsumedError(ApprovalStateError):
    """The approval was already used by an execution; approvals are single-use."""

    code = "approval-consumed"


class SeparationOfDutiesError(ApprovalStateError):
    """The actor may not take this decision (requester approving their own request, a repeat vote)."""

    code = "separation-of-duties"


class ApprovalBindingError(VerificationError):
    """The approval is bound to another action, subject digest or target than the execution's."""

    code = "approval-binding-mismatch"


class CheckpointError(VerificationError):
    """An evidence checkpoint is malformed, unsigned by a trusted key, or disagrees with the chain."""

    code = "checkpoint-invalid"


def validation_problem(exc: ValidationError, *, default_location: str = "(document)") -> str:
    """``"<field path>: <message>"`` for the first problem pydantic found."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or default_location
    return f"{where}: {first['msg']}"


# --- trust-root rotation ---


class TrustRootRotationError(VerificationError):
    """A new trust root does not chain from the current one (TUF-style root rotation)."""

    code = "trust-root-rotation"


class RootVersionError(TrustRootRotationError):
    """The new trust root's version is not exactly the current version + 1 (a skipped version)."""

    code = "trust-root-version"


class RootRollbackError(RootVersionError, RollbackError):
    """The new trust root's version is lower than (or equal to) the current one."""

    code = "trust-root-rollback"


class RootForkError(TrustRootRotationError):
    """Two trust roots claim the same version with different bodies."""

    code = "trust-root-fork"


class RootExpiredError(TrustRootRotationError):
    """The newest trust root of a chain has expired."""

    code = "trust-root-expired"


class RootThresholdError(TrustRootRotationError, ThresholdNotMetError):
    """Too few distinct root keys signed the new trust root; ``signers`` says whose keys
    (``previous``: the current version's root keys, ``new``: the new version's own root keys)."""

    code = "trust-root-threshold"

    def __init__(self, message: str, signers: str) -> None:
        super().__init__(message)
        self.signers = signers
