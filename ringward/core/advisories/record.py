"""The advisory record, ``ringward.advisory.v1``: every item of the seed's "Advisory Content"
list as a field, and links by digest to the release evidence the advisory speaks about.

Field map (seed item -> field):

==========================================================  ==============================================
advisory ID or release tag                                  ``advisory_id``, ``release_tag``
severity and affected components                            ``severity`` (CVSS v4 + playbook rule),
                                                            ``affected.purl``, ``affected.components``
affected versions and fixed versions                        ``affected.range`` (vers), ``affected.fixed``
customer impact and exploitation prerequisites              ``customer_impact``, ``exploitation_prerequisites``
mitigation before upgrade                                   ``mitigation_before_upgrade``
fixed commit, pull request, release asset links             ``fix.commit``, ``fix.pull_request``, ``fix.release_assets``
verification steps (verify-package)                         ``verification_steps``; ``links.packages`` (re-verified)
release-candidate upgrade validation                        ``links.evidence["upgrade-validation"]``
release channel review (channel manifest)                   ``links.packages[].documents["channel-manifest"]``
updater policy review                                       ``links.packages[].documents["updater-policy"]``
installer smoke validation                                  ``links.evidence["installer-smoke"]``
rollout evidence capture                                    ``links.rollouts`` (re-verified)
rollout evidence verification and indexing                  ``links.evidence["rollout-verification"]``
signed rollout promotion approval requests                  ``links.evidence["promotion-request"]``
approved promotion execution records                        ``links.promotion_executions`` (re-verified)
promotion execution search and audit drill-downs            ``audit_paths`` (derived from the executions)
approved rollback execution records                         ``links.evidence["rollback-execution"]``
SIEM and ITSM promotion audit exports                       ``links.evidence["audit-export"]``
connector delivery of audit / rollback records              ``links.deliveries`` (re-checked)
persisted delivery history and dashboard alerts             ``audit_paths`` (derived commands)
channel promotion request and export history                ``links.evidence["channel-promotion"]``
governed endpoint-management export downloads               ``links.evidence["endpoint-export"]``
endpoint-management publication delivery records            ``links.evidence["endpoint-publication"]``
managed endpoint reconciliation                             ``links.evidence["endpoint-reconciliation"]``
inventory freshness SLA alerts / reconciliation automation  ``links.evidence["inventory-freshness"]``
rollout evidence search and governed artifact downloads     ``audit_paths`` (derived commands)
SBOM, installer metadata, deployment manifest, channel      ``links.packages[].documents`` (digests),
manifest, updater policy, checksum, detached signature,     ``links.packages[].signature_files``;
keyless attestation and SLSA provenance references          keyless attestation: see ``GATE_NOT_CHECKED``
==========================================================  ==============================================

The template fields of the seed's advisory text (user-safety impact, reporter, acknowledgement /
triage / fix / disclosure dates) are ``severity.user_safety_classes``, ``user_safety_impact``,
``reporter`` and ``timeline``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.advisories.severity import SeverityAssessment
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import InputError, validation_problem

ADVISORY_SCHEMA: Final = "ringward.advisory.v1"
ADVISORY_SIGNATURE_SCHEMA: Final = "ringward.advisory.signature.v1"
MAX_ADVISORY_BYTES: Final = 4 * 1024 * 1024

ADVISORY_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,127}$"
CVE_PATTERN: Final = r"^CVE-[0-9]{4}-[0-9]{4,19}$"
CWE_PATTERN: Final = r"^CWE-[1-9][0-9]{0,5}$"
SHA256_HEX: Final = r"^[0-9a-f]{64}$"
DIGEST: Final = r"^sha256:[0-9a-f]{64}$"


class EvidenceItem(StrEnum):
    """Seed items proven by an evidence record of the chain (kinds each may link to below)."""

    UPGRADE_VALIDATION = "upgrade-validation"
    INSTALLER_SMOKE = "installer-smoke"
    ROLLOUT_VERIFICATION = "rollout-verification"
    PROMOTION_REQUEST = "promotion-request"
    ROLLBACK_EXECUTION = "rollback-execution"
    AUDIT_EXPORT = "audit-export"
    CHANNEL_PROMOTION = "channel-promotion"
    ENDPOINT_EXPORT = "endpoint-export"
    ENDPOINT_PUBLICATION = "endpoint-publication"
    ENDPOINT_RECONCILIATION = "endpoint-reconciliation"
    INVENTORY_FRESHNESS = "inventory-freshness"


#: evidence kinds accepted per item; None = any kind (domains Ringward does not build yet)
EVIDENCE_KINDS: Final[dict[EvidenceItem, frozenset[str] | None]] = {
    EvidenceItem.UPGRADE_VALIDATION: frozenset({"release-upgrade-validation"}),
    EvidenceItem.INSTALLER_SMOKE: frozenset({"release-installer-smoke"}),
    EvidenceItem.ROLLOUT_VERIFICATION: frozenset({"managed-endpoint-rollout"}),
    EvidenceItem.PROMOTION_REQUEST: frozenset({"rollout-promotion-request"}),
    EvidenceItem.ROLLBACK_EXECUTION: frozenset({"rollout-rollback-execution"}),
    EvidenceItem.AUDIT_EXPORT: frozenset({"rollout-audit-export"}),
    EvidenceItem.CHANNEL_PROMOTION: frozenset({"release-channel-promotion-request", "release-channel-state"}),
    EvidenceItem.ENDPOINT_EXPORT: frozenset({"endpoint-management-export"}),
    EvidenceItem.ENDPOINT_PUBLICATION: frozenset({"endpoint-management-publication-delivery"}),
    EvidenceItem.ENDPOINT_RECONCILIATION: None,
    EvidenceItem.INVENTORY_FRESHNESS: None,
}


class PackageDocument(StrEnum):
    """Release package documents an advisory links by digest (names as in the package)."""

    CHECKSUMS = "checksums"
    RELEASE_EVIDENCE = "release-evidence"
    PROVENANCE = "provenance"
    SBOM = "sbom"
    INSTALLER_METADATA = "installer-metadata"
    ENDPOINT_DEPLOYMENT = "endpoint-deployment-manifest"
    CHANNEL_MANIFEST = "channel-manifest"
    UPDATER_POLICY = "updater-policy"
    OFFLINE_BOOTSTRAP = "offline-trust-bootstrap"


#: what the gate reports without checking it, and why (said in every gate report)
GATE_NOT_CHECKED: Final = {
    "github keyless attestation": "not verified: the Sigstore verification layer is not part of Ringward yet",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DocumentLink(_Model):
    name: str = Field(min_length=1, max_length=256)
    sha256: str = Field(pattern=SHA256_HEX)


class PackageLink(_Model):
    """A release package, by the digest of its signed ``checksums.txt`` and each document's digest."""

    path: str = Field(min_length=1, max_length=4096)
    runtime: str
    version: str
    commit: str
    checksums_digest: str = Field(pattern=DIGEST)
    documents: dict[PackageDocument, DocumentLink]
    signature_files: tuple[str, ...]
    signers: tuple[str, ...]
    verified_at: datetime


class RolloutLink(_Model):
    path: str = Field(min_length=1, max_length=4096)
    rollout_id: str
    release_version: str
    evidence_sha256: str = Field(pattern=SHA256_HEX)


class ExecutionLink(_Model):
    path: str = Field(min_length=1, max_length=4096)
    execution_id: str
    rollout_id: str
    release_version: str
    sha256: str = Field(pattern=SHA256_HEX)


class EvidenceLink(_Model):
    evidence_id: int = Field(ge=1)
    kind: str
    record_hash: str = Field(pattern=SHA256_HEX)


class AdvisoryLinks(_Model):
    packages: tuple[PackageLink, ...] = ()
    rollouts: tuple[RolloutLink, ...] = ()
    promotion_executions: tuple[ExecutionLink, ...] = ()
    deliveries: tuple[EvidenceLink, ...] = ()
    evidence: dict[EvidenceItem, tuple[EvidenceLink, ...]] = Field(default_factory=dict)


class AffectedProduct(_Model):
    purl: str = Field(min_length=1, max_length=1024)
    ecosystem: str
    name: str
    #: affected components of the product (binaries, targets, modules)
    components: tuple[str, ...] = Field(min_length=1)
    #: the affected range, ``vers:<scheme>/...`` (univers)
    range: str = Field(min_length=1, max_length=2048)
    fixed: tuple[str, ...] = Field(min_length=1)


class FixReferences(_Model):
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,64}$")
    pull_request: str | None = Field(default=None, max_length=2048)
    release_assets: tuple[str, ...] = ()


class DisclosureTimeline(_Model):
    reported: date | None = None
    acknowledged: date | None = None
    triaged: date | None = None
    fixed: date | None = None
    disclosed: date | None = None


class AdvisoryRecord(_Model):
    schema_version: Literal["ringward.advisory.v1"] = ADVISORY_SCHEMA
    advisory_id: str = Field(pattern=ADVISORY_ID_PATTERN)
    release_tag: str | None = Field(default=None, max_length=256)
    created_at: datetime
    created_by: str = Field(min_length=1, max_length=256)
    summary: str = Field(min_length=1, max_length=1000)
    details: str | None = Field(default=None, max_length=20000)
    severity: SeverityAssessment
    cve: str | None = Field(default=None, pattern=CVE_PATTERN)
    aliases: tuple[str, ...] = ()
    cwe: tuple[str, ...] = Field(min_length=1)
    reporter: str | None = Field(default=None, max_length=256)
    user_safety_impact: str | None = Field(default=None, max_length=4000)
    affected: AffectedProduct
    customer_impact: str | None = Field(default=None, max_length=8000)
    exploitation_prerequisites: str | None = Field(default=None, max_length=8000)
    mitigation_before_upgrade: str | None = Field(default=None, max_length=8000)
    fix: FixReferences = FixReferences()
    verification_steps: tuple[str, ...] = ()
    audit_paths: tuple[str, ...] = ()
    timeline: DisclosureTimeline = DisclosureTimeline()
    links: AdvisoryLinks = AdvisoryLinks()

    @field_validator("cwe")
    @classmethod
    def _cwe(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.match(CWE_PATTERN, item):
                raise ValueError(f"expected CWE-<n>, found {item!r}")
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.utcoffset() is None:
            raise ValueError("must include a UTC offset")
        return value

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_advisory(data: bytes, *, source: str) -> tuple[dict[str, Any], AdvisoryRecord]:
    """(raw document, record) of an advisory file: strict JSON, then the model.

    A ``signature`` object (a published, signed advisory) is left out of the model and returned in
    the raw document for the signature check.

    Raises:
        InputError: bad JSON or a field that does not fit ``ringward.advisory.v1``.
    """
    try:
        raw = loads_strict(data, source=source, max_bytes=MAX_ADVISORY_BYTES)
    except InputError:
        raise
    except Exception as exc:  # MalformedDocumentError: for the advisory file it is the caller's input
        raise InputError(str(exc)) from exc
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a JSON object, found {type(raw).__name__}")
    body = {k: v for k, v in raw.items() if k != "signature"}
    if body.get("schema_version") != ADVISORY_SCHEMA:
        raise InputError(f"{source}: schema_version expected {ADVISORY_SCHEMA!r}, found {body.get('schema_version')!r}")
    try:
        return raw, AdvisoryRecord.model_validate(body)
    except ValidationError as exc:
        raise InputError(f"{source}: {validation_problem(exc)}") from exc
