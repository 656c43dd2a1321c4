"""The Jamf Pro publication an event asks for, parsed once at the boundary (pure: no I/O).

An endpoint-management publication event (``cavra.endpoint-management-publication.v1``, or a native
Ringward event built the same way) carries the reference Jamf export file ``jamf-policy.json``
(schema ``cavra.endpoint-management.jamf.v1``, cavra-spec §4.7) under ``provider_payloads["jamf"]``.
The native Jamf Pro publisher (``connectors.providers.jamf_pro``) turns it into a package record
with uploaded content, an install script and a policy; everything it needs is decided here, so the
provider never reads an unvalidated dict and a bad payload fails before the first call.

The installer package is named by the payload (``package``: a file name, or an object with
``artifact``/``file_name``, ``sha256`` and ``bytes``) or, failing that, found in the event's
``attributes["artifacts"]`` list (``[{artifact, sha256, bytes}]``, the reference publication event
shape) as its only ``.pkg``/``.dmg``/``.mpkg`` entry. The hash and size must be known: the
publisher checks the bytes it reads against them before uploading anything.

Names the publisher looks up in Jamf (policy name, release, package file name) may not contain
``*`` (a wildcard in Jamf's RSQL filters, which have no escape for it) or ``"``: a look-up by name
must find exactly that name. The install script of each release is its own Jamf record, named
``"<policy_name> install <release>"`` (release: the event's ``release.version``, else the package's
file name), so publishing a release never changes a script another release's policy runs.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.publication_artifact import ArtifactFile, event_artifacts, provider_payload, validated
from ringward.core.errors import ConnectorEventError

JAMF_POLICY_SCHEMA = "cavra.endpoint-management.jamf.v1"
#: provider_payloads key of the Jamf export file
JAMF_PAYLOAD_KEY = "jamf"
#: written into package and script notes so a record can be traced back to the event that made it
EVENT_MARKER = "ringward-event:"
#: installer suffixes Jamf Pro distributes (flat packages and disk images)
INSTALLER_SUFFIXES = (".pkg", ".mpkg", ".dmg")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: characters refused in names looked up in Jamf: RSQL wildcard (unescapable) and the quote
NAME_FORBIDDEN = ("*", '"')
#: Jamf custom event names: what ``jamf policy -event <name>`` accepts without quoting
_TRIGGER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def check_jamf_name(value: str) -> str:
    """A name Ringward looks up in Jamf: one line, no surrounding spaces, no ``*`` or ``"``.

    Raises:
        ValueError: naming the problem.
    """
    if _CONTROL.search(value) or value != value.strip():
        raise ValueError("must be one line without control characters or surrounding spaces")
    found = [c for c in NAME_FORBIDDEN if c in value]
    if found:
        shown = " and ".join(repr(c) for c in found)
        raise ValueError(
            f"must not contain {shown} (Jamf name filters treat '*' as a wildcard and cannot escape it), "
            f"found {value[:80]!r}"
        )
    return value


class JamfTarget(BaseModel):
    """One workstation target of the export (kept for traceability; Jamf scope comes from config)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=256)
    platform: str | None = None
    os: str | None = None
    arch: str | None = None
    binary: str | None = None
    binary_sha256: str | None = None
    management_tool: str | None = None


class PackageArtifact(ArtifactFile):
    """The installer package: where it is under ``artifact_root`` and what its bytes must be."""

    @property
    def file_name(self) -> str:
        """The installer's file name: Jamf's ``packageName`` and ``fileName``."""
        return posixpath.basename(self.artifact)


class JamfPolicyPayload(BaseModel):
    """``jamf-policy.json`` as the reference writes it (extra reference fields are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal["cavra.endpoint-management.jamf.v1"]
    policy_name: str = Field(min_length=1, max_length=200)
    trigger: str
    approval_required: bool = True
    rollback_required: bool = True
    soak_hours: float = Field(default=0, ge=0)
    targets: tuple[JamfTarget, ...] = ()
    install_script: tuple[str, ...] = Field(min_length=1)
    publication_context: dict[str, Any] | None = None
    #: the installer: a file name (hash and size from the event's artifacts) or a full description
    package: str | dict[str, Any] | None = None

    @field_validator("policy_name")
    @classmethod
    def _check_policy_name(cls, value: str) -> str:
        return check_jamf_name(value)

    @field_validator("trigger")
    @classmethod
    def _check_trigger(cls, value: str) -> str:
        if not _TRIGGER.match(value):
            raise ValueError(f"expected a Jamf custom event name [A-Za-z0-9._-], found {value!r}")
        return value

    @field_validator("install_script")
    @classmethod
    def _check_script(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].startswith("#!"):
            raise ValueError(f"first line must be an interpreter line '#!...', found {value[0][:40]!r}")
        if any("\n" in line or "\r" in line or "\x00" in line for line in value):
            raise ValueError("each entry must be one line (no line breaks or NUL)")
        return value


class JamfPublication(BaseModel):
    """Everything the Jamf Pro publisher sends for one event, decided before the first call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    policy: JamfPolicyPayload
    package: PackageArtifact
    #: the release this publication installs (the event's release version, else the package file name)
    release: str = Field(min_length=1, max_length=255)

    @field_validator("release")
    @classmethod
    def _check_release(cls, value: str) -> str:
        return check_jamf_name(value)

    @model_validator(mode="after")
    def _check_package_name(self) -> JamfPublication:
        check_jamf_name(self.package.file_name)
        return self

    @property
    def script_name(self) -> str:
        """This release's install script in Jamf (looked up by it on every run; one per release)."""
        return f"{self.policy.policy_name} install {self.release}"

    @property
    def script_contents(self) -> str:
        """The install script as Jamf stores it: the reference lines joined, ending in a newline."""
        return "\n".join(self.policy.install_script) + "\n"

    @property
    def marker(self) -> str:
        return f"{EVENT_MARKER}{self.event_id}"


def has_jamf_payload(event: ConnectorEvent) -> bool:
    """Whether ``event`` asks for a Jamf publication at all."""
    return isinstance(event.provider_payloads.get(JAMF_PAYLOAD_KEY), dict)


def _package_fields(event: ConnectorEvent, package: str | dict[str, Any] | None) -> dict[str, Any]:
    """The package's {artifact, sha256, bytes}: from the payload, completed from the event's artifacts."""
    artifacts = event_artifacts(event)
    if package is None:
        installers = [a for a in artifacts if str(a.get("artifact", "")).lower().endswith(INSTALLER_SUFFIXES)]
        if len(installers) != 1:
            names = ", ".join(str(a.get("artifact")) for a in installers) or "none"
            raise ConnectorEventError(
                f"event {event.event_id}: provider_payloads.jamf.package: expected one installer "
                f"({'/'.join(INSTALLER_SUFFIXES)}) in attributes.artifacts, found {names}"
            )
        return {k: installers[0].get(k) for k in ("artifact", "sha256", "bytes")}
    if isinstance(package, str):
        fields: dict[str, Any] = {"artifact": package}
    else:
        fields = dict(package)
        if "file_name" in fields and "artifact" not in fields:
            fields["artifact"] = fields.pop("file_name")
    if "sha256" in fields and "bytes" in fields:
        return fields
    name = fields.get("artifact")
    listed = [a for a in artifacts if a.get("artifact") == name]
    if len(listed) != 1:
        raise ConnectorEventError(
            f"event {event.event_id}: provider_payloads.jamf.package: sha256 and bytes of {name!r} are "
            f"neither in the payload nor in attributes.artifacts (found {len(listed)} entries)"
        )
    merged = {k: listed[0].get(k) for k in ("artifact", "sha256", "bytes")}
    for key in ("sha256", "bytes"):
        if key in fields and fields[key] != merged[key]:
            raise ConnectorEventError(
                f"event {event.event_id}: provider_payloads.jamf.package.{key}: payload says "
                f"{fields[key]!r}, attributes.artifacts says {merged[key]!r}"
            )
    return merged


def parse_jamf_publication(event: ConnectorEvent) -> JamfPublication:
    """The publication ``event`` asks for.

    Raises:
        ConnectorEventError: no Jamf payload, or the payload or its package is invalid (every
            problem listed with its path).
    """
    raw = provider_payload(event, JAMF_PAYLOAD_KEY)
    policy = validated(JamfPolicyPayload, raw, event_id=event.event_id, path="provider_payloads.jamf")
    fields = _package_fields(event, policy.package)
    package = validated(PackageArtifact, fields, event_id=event.event_id, path="provider_payloads.jamf.package")
    release = event.release_version or package.file_name
    publication = {"event_id": event.event_id, "policy": policy, "package": package, "release": release}
    return validated(JamfPublication, publication, event_id=event.event_id)
