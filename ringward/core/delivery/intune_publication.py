"""The Microsoft Intune publication an event asks for, parsed once at the boundary (pure: no I/O).

An endpoint-management publication event (``cavra.endpoint-management-publication.v1``, or a native
Ringward event built the same way) carries the reference Intune export file ``intune-win32-app.json``
(schema ``cavra.endpoint-management.intune.v1``, cavra-spec §4.7) under
``provider_payloads["intune"]``. The native Graph publisher (``connectors.providers.intune_graph``)
turns it into a ``win32LobApp`` with uploaded content; everything it sends is decided here, so the
provider never reads an unvalidated dict and a bad payload fails before the first call.

The installer content is the list of files named by the payload's ``content`` (names, or objects
with ``artifact``, ``sha256`` and ``bytes``); names without a digest are completed from the event's
``attributes["artifacts"]`` (``[{artifact, sha256, bytes}]``, the reference publication event
shape), and without ``content`` every listed artifact is packaged. Digest and size must be known:
the publisher checks the bytes it reads against them before anything is uploaded.

Why the detection rule is a PowerShell script: the reference detects the install by the binary's
SHA-256, and Graph's ``win32LobAppFileSystemRule`` can only compare existence, version, size or
dates, never a hash. The script compares ``Get-FileHash -Algorithm SHA256`` with the allowed
digests and, as Intune requires of a detection script, exits 0 and writes to STDOUT on a match.
The path goes into a PowerShell single-quoted string, which PowerShell ends at any of five quote
characters (``'`` and U+2018, U+2019, U+201A, U+201B): every one of them is doubled.

Every release is its own app, named ``<display_name> <release_version>`` (the version is not
added twice) so people can tell releases apart in Intune. Its ``notes`` carry the event marker
(``ringward-event:<id>``, how a re-run finds it) and a channel marker
(``ringward-channel:<digest of display_name>``, how the next release of the same payload finds the
apps it supersedes).
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.common.versions import ReleaseVersion, version_or_none
from ringward.core.delivery.event import ConnectorEvent, format_validation_error
from ringward.core.delivery.publication_artifact import ArtifactFile, event_artifacts, provider_payload, validated
from ringward.core.errors import ConnectorEventError

INTUNE_APP_SCHEMA = "cavra.endpoint-management.intune.v1"
#: provider_payloads key of the Intune export file
INTUNE_PAYLOAD_KEY = "intune"
#: written into the app's ``notes`` so a later run finds the app an earlier run created
EVENT_MARKER = "ringward-event:"
#: written into the app's ``notes``: the apps of one payload ``display_name`` (one channel)
CHANNEL_MARKER = "ringward-channel:"
#: written into ``notes``: the release (canonical SemVer) an app carries
RELEASE_MARKER = "ringward-release:"
#: the characters that open or close a PowerShell single-quoted string (doubled inside one)
POWERSHELL_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
#: the publisher shown in the Company Portal and the Intune admin center
PUBLISHER = "Ringward"
#: exit codes as Windows installers conventionally use them (msiexec / Win32 setup)
RETURN_CODES: tuple[tuple[int, str], ...] = (
    (0, "success"),
    (1707, "success"),
    (3010, "softReboot"),
    (1641, "hardReboot"),
    (1618, "retry"),
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ARCHITECTURES = re.compile(r"^(none|x86|x64|arm|neutral|arm64)(,(none|x86|x64|arm|neutral|arm64))*$")
#: a file name inside a command line (the setup file is the first content file named there)
_COMMAND_TOKEN = re.compile(r"[^\s\"']+")


def powershell_single_quoted(value: str) -> str:
    """``value`` as a PowerShell single-quoted string literal (every single-quote character doubled)."""
    return "'" + "".join(c * 2 if c in POWERSHELL_SINGLE_QUOTES else c for c in value) + "'"


def _one_line(value: str) -> str:
    if _CONTROL.search(value) or value != value.strip():
        raise ValueError("must be one line without control characters or surrounding spaces")
    return value


class ContentFile(ArtifactFile):
    """One file of the installer content: where it is under ``artifact_root`` and what its bytes must be
    (its path there is also its path inside the package)."""

    @property
    def windows_path(self) -> str:
        """The file's path inside the package as Intune names it (``setupFilePath``)."""
        return self.artifact.replace("/", "\\")


class DetectionRule(BaseModel):
    """The reference detection rule: the installed file and the SHA-256 values it may have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["file_sha256"]
    #: Windows path, environment variables allowed (``%ProgramFiles%\\CAVRA\\cavra-runtime.exe``)
    path: str = Field(min_length=1, max_length=1024)
    sha256_values: tuple[str, ...] = Field(min_length=1, max_length=64)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _one_line(value)

    @field_validator("sha256_values")
    @classmethod
    def _check_values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(v.lower() for v in value)
        bad = [v for v in lowered if not _SHA256.match(v)]
        if bad:
            raise ValueError(f"expected 64 hex characters each, found {bad[0]!r}")
        return tuple(dict.fromkeys(lowered))


class IntuneAppPayload(BaseModel):
    """``intune-win32-app.json`` as the reference writes it, plus the optional content fields.

    Reference fields Ringward does not use (targets, approval flags) are ignored, not refused, so a
    newer export still publishes.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal["cavra.endpoint-management.intune.v1"]
    display_name: str = Field(min_length=1, max_length=200)
    install_behavior: Literal["system", "user"] = "system"
    install_command: str = Field(min_length=1, max_length=1024)
    uninstall_command: str = Field(min_length=1, max_length=1024)
    detection_rule: DetectionRule
    publication_context: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=4000)
    #: the installer content: artifact names, or {artifact, sha256, bytes}; None: every event artifact
    content: tuple[str | dict[str, Any], ...] | None = None
    #: the setup file inside the content (default: the first content file the install command names)
    setup_file: str | None = None
    applicable_architectures: str = "x64"
    #: Windows 10 release the app needs at least (Graph ``minimumSupportedWindowsRelease``)
    minimum_supported_windows_release: str = Field(default="1607", pattern=r"^[0-9A-Za-z]{2,8}$")

    @field_validator("display_name", "install_command", "uninstall_command")
    @classmethod
    def _check_line(cls, value: str) -> str:
        return _one_line(value)

    @field_validator("applicable_architectures")
    @classmethod
    def _check_architectures(cls, value: str) -> str:
        if not _ARCHITECTURES.match(value):
            raise ValueError(f"expected a comma list of x86/x64/arm/arm64/neutral/none, found {value!r}")
        return value


class IntunePublication(BaseModel):
    """Everything the Intune publisher sends for one event, decided before the first call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    release_version: str | None = None
    app: IntuneAppPayload
    content: tuple[ContentFile, ...] = Field(min_length=1)
    setup: ContentFile

    @property
    def marker(self) -> str:
        """The ``notes`` token that identifies this event's app (matched as a whole word)."""
        return f"{EVENT_MARKER}{self.event_id}"

    @property
    def channel_marker(self) -> str:
        """The ``notes`` token shared by every release's app of this payload ``display_name``."""
        digest = hashlib.sha256(self.app.display_name.encode("utf-8")).hexdigest()[:16]
        return f"{CHANNEL_MARKER}{digest}"

    @property
    def release_marker(self) -> str | None:
        """The ``notes`` token naming this release (canonical SemVer only), so later publications of
        the channel can tell older releases from newer ones."""
        version = version_or_none(self.release_version)
        return None if version is None else f"{RELEASE_MARKER}{version}"

    @property
    def notes(self) -> str:
        tokens = [self.channel_marker, self.release_marker, self.marker]
        return "Published by Ringward. " + " ".join(t for t in tokens if t)

    def other_release(self, notes: object) -> ReleaseVersion | None:
        """The release an app's ``notes`` name (None: no release token, or not canonical SemVer)."""
        if not isinstance(notes, str):
            return None
        for token in notes.split():
            if token.startswith(RELEASE_MARKER):
                return version_or_none(token.removeprefix(RELEASE_MARKER))
        return None

    def is_newer_release(self, notes: object) -> bool:
        """Whether an app of this channel (see :meth:`supersedes`'s rules) is a LATER release than
        this event's: publishing this one over it would be a rollback."""
        mine, theirs = version_or_none(self.release_version), self.other_release(notes)
        return mine is not None and theirs is not None and mine < theirs

    @property
    def display_name(self) -> str:
        """The app's name: the payload's ``display_name`` plus the release version (when not already in it)."""
        name = self.app.display_name
        version = self.release_version
        if not version or re.search(rf"(?<![\w.]){re.escape(version)}(?![\w.])", name):
            return name
        return f"{name} {version}"

    @property
    def file_name(self) -> str:
        """The uploaded file's name, as IntuneWinAppUtil names it: ``<setup stem>.intunewin``."""
        stem, _ext = posixpath.splitext(posixpath.basename(self.setup.artifact))
        return f"{stem}.intunewin"

    def has_marker(self, notes: object) -> bool:
        """Whether an app's ``notes`` carry this event's marker (whole token: ``evt-1`` is not ``evt-10``)."""
        return isinstance(notes, str) and self.marker in notes.split()

    def supersedes(self, display_name: object, notes: object) -> bool:
        """Whether an app is an earlier Ringward release of this payload (another event, same channel).

        Only apps whose ``notes`` carry a Ringward event marker qualify; the channel is the channel
        marker, or for apps made before it existed, exactly the payload's ``display_name``.
        """
        if not isinstance(notes, str):
            return False
        tokens = notes.split()
        if self.marker in tokens or not any(t.startswith(EVENT_MARKER) and t != EVENT_MARKER for t in tokens):
            return False
        if not self._same_channel(display_name, tokens):
            return False
        # a later release is never "superseded" by an earlier one delivered late
        mine, theirs = version_or_none(self.release_version), self.other_release(notes)
        return mine is None or theirs is None or theirs < mine

    def same_channel_newer(self, display_name: object, notes: object) -> bool:
        """An app of this channel that is a later release than this event's (see :meth:`supersedes`)."""
        if not isinstance(notes, str) or self.marker in notes.split():
            return False
        tokens = notes.split()
        return (
            self._same_channel(display_name, tokens)
            and any(t.startswith(EVENT_MARKER) for t in tokens)
            and self.is_newer_release(notes)
        )

    def _same_channel(self, display_name: object, tokens: list[str]) -> bool:
        """An app of this payload's channel: its channel marker, or (apps made before the marker
        existed) exactly the payload's ``display_name``."""
        return self.channel_marker in tokens or (
            not any(t.startswith(CHANNEL_MARKER) for t in tokens) and display_name == self.app.display_name
        )

    def detection_script(self) -> str:
        """The PowerShell detection script (CRLF lines, as Windows tools write them)."""
        rule = self.app.detection_rule
        path = powershell_single_quoted(rule.path)
        allowed = ", ".join(powershell_single_quoted(value) for value in rule.sha256_values)
        lines = [
            "# Ringward detection: the file's SHA-256 must be one of the released digests",
            "$ErrorActionPreference = 'Stop'",
            f"$path = [Environment]::ExpandEnvironmentVariables({path})",
            f"$allowed = @({allowed})",
            "if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { exit 1 }",
            "$hash = (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash.ToLowerInvariant()",
            "if ($allowed -contains $hash) {",
            '    Write-Output "Detected $path sha256 $hash"',
            "    exit 0",
            "}",
            "exit 1",
        ]
        return "\r\n".join(lines) + "\r\n"

    def win32_lob_app(self) -> dict[str, Any]:
        """The Graph ``win32LobApp`` create body (POST ``/deviceAppManagement/mobileApps``)."""
        app = self.app
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.win32LobApp",
            "displayName": self.display_name,
            "description": app.description or f"{app.display_name}, published by Ringward from event {self.event_id}.",
            "publisher": PUBLISHER,
            "notes": self.notes,
            "isFeatured": False,
            "fileName": self.file_name,
            "setupFilePath": self.setup.windows_path,
            "installCommandLine": app.install_command,
            "uninstallCommandLine": app.uninstall_command,
            "installExperience": {
                "@odata.type": "microsoft.graph.win32LobAppInstallExperience",
                "runAsAccount": app.install_behavior,
                "deviceRestartBehavior": "basedOnReturnCode",
            },
            "returnCodes": [
                {"@odata.type": "microsoft.graph.win32LobAppReturnCode", "returnCode": code, "type": kind}
                for code, kind in RETURN_CODES
            ],
            "applicableArchitectures": app.applicable_architectures,
            "minimumSupportedWindowsRelease": app.minimum_supported_windows_release,
            "rules": [
                {
                    "@odata.type": "#microsoft.graph.win32LobAppPowerShellScriptRule",
                    "ruleType": "detection",
                    "displayName": "Ringward SHA-256 detection",
                    "enforceSignatureCheck": False,
                    "runAs32Bit": False,
                    "scriptContent": base64.b64encode(self.detection_script().encode("utf-8")).decode("ascii"),
                    "operationType": "notConfigured",
                    "operator": "notConfigured",
                    "comparisonValue": None,
                }
            ],
        }
        if self.release_version:
            body["displayVersion"] = self.release_version
        return body


def has_intune_payload(event: ConnectorEvent) -> bool:
    """Whether ``event`` asks for an Intune publication at all."""
    return isinstance(event.provider_payloads.get(INTUNE_PAYLOAD_KEY), dict)


def _content_fields(event: ConnectorEvent, content: tuple[str | dict[str, Any], ...] | None) -> list[dict[str, Any]]:
    """Each content file's {artifact, sha256, bytes}: from the payload, completed from the event's artifacts."""
    artifacts = event_artifacts(event)
    if content is None:
        if not artifacts:
            raise ConnectorEventError(
                f"event {event.event_id}: provider_payloads.intune.content: expected content files in the "
                "payload or in attributes.artifacts, found none"
            )
        return [{k: a.get(k) for k in ("artifact", "sha256", "bytes")} for a in artifacts]
    fields: list[dict[str, Any]] = []
    for n, item in enumerate(content):
        entry: dict[str, Any] = {"artifact": item} if isinstance(item, str) else dict(item)
        if "sha256" in entry and "bytes" in entry:
            fields.append(entry)
            continue
        name = entry.get("artifact")
        listed = [a for a in artifacts if a.get("artifact") == name]
        if len(listed) != 1:
            raise ConnectorEventError(
                f"event {event.event_id}: provider_payloads.intune.content[{n}]: expected sha256 and bytes of "
                f"{name!r} in the payload or once in attributes.artifacts, found {len(listed)} entries"
            )
        merged = {k: listed[0].get(k) for k in ("artifact", "sha256", "bytes")}
        for key in ("sha256", "bytes"):
            if key in entry and entry[key] != merged[key]:
                raise ConnectorEventError(
                    f"event {event.event_id}: provider_payloads.intune.content[{n}].{key}: payload says "
                    f"{entry[key]!r}, attributes.artifacts says {merged[key]!r}"
                )
        fields.append(merged)
    return fields


def _setup_file(event_id: str, app: IntuneAppPayload, files: tuple[ContentFile, ...]) -> ContentFile:
    if app.setup_file is not None:
        for item in files:
            if app.setup_file in (item.artifact, item.windows_path):
                return item
        names = ", ".join(f.artifact for f in files)
        raise ConnectorEventError(
            f"event {event_id}: provider_payloads.intune.setup_file: expected one of the content files "
            f"({names}), found {app.setup_file!r}"
        )
    tokens = {t.replace("\\", "/").rsplit("/", 1)[-1].lower() for t in _COMMAND_TOKEN.findall(app.install_command)}
    for item in files:
        if posixpath.basename(item.artifact).lower() in tokens:
            return item
    return files[0]


def parse_intune_publication(event: ConnectorEvent) -> IntunePublication:
    """The publication ``event`` asks for.

    Raises:
        ConnectorEventError: no Intune payload, or the payload or its content is invalid (every
            problem listed with its path).
    """
    raw = provider_payload(event, INTUNE_PAYLOAD_KEY)
    app = validated(IntuneAppPayload, raw, event_id=event.event_id, path="provider_payloads.intune")
    problems: list[str] = []
    files: list[ContentFile] = []
    for n, entry in enumerate(_content_fields(event, app.content)):
        try:
            files.append(ContentFile.model_validate(entry))
        except ValidationError as exc:
            problems.extend(format_validation_error(exc, prefix=f"provider_payloads.intune.content[{n}]"))
    if problems:
        raise ConnectorEventError(f"event {event.event_id}: " + "; ".join(problems))
    seen: set[str] = set()
    for item in files:
        if item.artifact in seen:
            raise ConnectorEventError(
                f"event {event.event_id}: provider_payloads.intune.content: expected distinct files, "
                f"found {item.artifact!r} twice"
            )
        seen.add(item.artifact)
    content = tuple(files)
    setup = _setup_file(event.event_id, app, content)
    return IntunePublication(
        event_id=event.event_id, release_version=event.release_version, app=app, content=content, setup=setup
    )
