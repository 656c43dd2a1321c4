"""Endpoint-management exports (reference §4.7) and their publication event (§4.8), without I/O.

An export directory holds, for the selected providers::

    endpoint-management-export-manifest.json   cavra.endpoint-management-export.v1
    endpoint-management-export-manifest.md
    jamf-policy.json                           cavra.endpoint-management.jamf.v1
    jamf/<runtime>-<version>-macos.zip         the Jamf package: every macOS binary of the channel
    intune-win32-app.json                      cavra.endpoint-management.intune.v1
    intune/install-<runtime>.ps1, intune/rollback-<runtime>.ps1, intune/<windows binary>
    linux-fleet-manifest.json                  cavra.endpoint-management.linux.v1
    linux-install-<runtime>.sh
    checksums.txt                              every file above

Ids keep the reference formulas: ``export_id`` = ``eme_`` + sha256("<channel>:<version>:<sorted
providers joined ,>:<approval_id>")[:12]; ``publication_id`` = ``emp_`` +
sha256("<export_id>:<channel>:<version>:<sorted providers joined ,>")[:12].

What Ringward adds: the installer files the native publishers upload are part of the export
(checksummed with it), the provider files name them with size and SHA-256 (``package`` for Jamf,
``content`` for Intune, relative to ``artifact_dir``), install scripts check each binary's digest
before installing it, and the manifest records the target ring, the approval binding and the
digest of the signed request. Deliveries read installers only from the verified export.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.delivery.intune_publication import powershell_single_quoted
from ringward.core.errors import InputError, MalformedDocumentError, validation_problem
from ringward.core.release.package_format import Channel, ChannelPolicy, InstallersDocument, WorkstationTarget

EXPORT_MANIFEST_SCHEMA = "cavra.endpoint-management-export.v1"
JAMF_SCHEMA = "cavra.endpoint-management.jamf.v1"
INTUNE_SCHEMA = "cavra.endpoint-management.intune.v1"
LINUX_SCHEMA = "cavra.endpoint-management.linux.v1"
PUBLICATION_SCHEMA = "cavra.endpoint-management-publication.v1"
PUBLICATION_EVENT_TYPE = "cavra.endpoint_management_export_publication"

EXPORT_MANIFEST = "endpoint-management-export-manifest.json"
EXPORT_SUMMARY = "endpoint-management-export-manifest.md"
CHECKSUMS = "checksums.txt"
JAMF_FILE = "jamf-policy.json"
INTUNE_FILE = "intune-win32-app.json"
LINUX_FILE = "linux-fleet-manifest.json"
JAMF_DIR = "jamf"
INTUNE_DIR = "intune"

#: evidence kinds (reference ``metadata_kind``)
KIND_EXPORT = "endpoint-management-export"
KIND_PUBLICATION = "endpoint-management-publication-delivery"

PROVIDERS: tuple[str, ...] = ("jamf", "intune", "linux")
EXPORT_CONTROLS = (
    "release-package-verified-before-export",
    "channel-promotion-approval-required-before-publish",
    "endpoint-tool-import-review-required",
    "rollback-package-reference-required",
)
PUBLICATION_CONTROLS = (
    "endpoint-export-metadata-indexed",
    "endpoint-export-artifacts-checksummed",
    "endpoint-publication-provider-selected",
    "endpoint-publication-delivery-recorded",
)
#: where Jamf places a policy's package before its script runs
JAMF_WAITING_ROOM = "/Library/Application Support/JAMF/Waiting Room"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def linux_script_name(runtime: str) -> str:
    return f"linux-install-{runtime}.sh"


def parse_provider_option(value: str, *, option: str = "--provider") -> tuple[str, ...]:
    """``all`` or a comma list of jamf / intune / linux -> the providers in canonical order.

    Raises:
        InputError: an unsupported provider (the reference's message).
    """
    names = [p.strip() for p in value.split(",") if p.strip()]
    if not names:
        raise InputError(f"{option}: expected all, jamf, intune or linux, found {value!r}")
    if "all" in names:
        if len(names) > 1:
            raise InputError(f"{option}: 'all' cannot be combined with other providers, found {value!r}")
        return PROVIDERS
    bad = [n for n in names if n not in PROVIDERS]
    if bad:
        raise InputError(f"{option}: unsupported endpoint-management export provider: {', '.join(bad)}")
    return tuple(p for p in PROVIDERS if p in names)


def provider_of(target: WorkstationTarget) -> str | None:
    """The reference's target -> provider rule: jamf / intune by tool or channel, linux by OS or tool."""
    tool = target.management_tool.lower()
    channel = target.deployment_channel.lower()
    if "jamf" in tool or "jamf" in channel:
        return "jamf"
    if "intune" in tool or "intune" in channel:
        return "intune"
    if target.os == "linux" or "linux" in tool:
        return "linux"
    return None


def export_target(target: WorkstationTarget) -> dict[str, Any]:
    keys = ("id", "platform", "os", "arch", "installer_target", "binary", "binary_sha256", "deployment_channel",
            "management_tool")
    full = target.model_dump(mode="json")
    return {k: full[k] for k in keys}


def export_id_for(channel: str, version: str, providers: Sequence[str], approval_id: str) -> str:
    text = f"{channel}:{version}:{','.join(sorted(providers))}:{approval_id}"
    return "eme_" + hashlib.sha256(text.encode()).hexdigest()[:12]


def publication_id_for(export_id: str, channel: str, version: str, providers: Sequence[str]) -> str:
    text = f"{export_id}:{channel}:{version}:{','.join(sorted(providers))}"
    return "emp_" + hashlib.sha256(text.encode()).hexdigest()[:12]


def artifact_entry(name: str, data: bytes) -> dict[str, Any]:
    """``{artifact, sha256, bytes}`` (the reference publication event's artifact shape)."""
    return {"artifact": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _install_paths(installers: InstallersDocument) -> dict[str, str]:
    return {t.target: t.install_path for t in installers.targets}


def soak_hours(policy: ChannelPolicy) -> int:
    return policy.rollout_rings[0].soak_hours if policy.rollout_rings else 0


# --- provider files ------------------------------------------------------------------------------------


def jamf_package_zip(binaries: Sequence[tuple[str, bytes]]) -> bytes:
    """The Jamf package: the channel's macOS binaries in a zip, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(binaries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o755 << 16
            info.create_system = 3
            archive.writestr(info, data)
    return buffer.getvalue()


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def jamf_install_script(runtime: str, version: str, channel: str, package_name: str,
                        targets: Sequence[WorkstationTarget], install_path: str) -> list[str]:
    """The policy script: unpack the package, pick this Mac's binary, check its SHA-256, install."""
    arch_names = {"arm64": "arm64", "amd64": "x86_64"}
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"# {runtime} {version} (channel {channel}): install this Mac's binary after checking its SHA-256",
        f"pkg={_shell_quote(JAMF_WAITING_ROOM + '/' + package_name)}",
        'work="$(mktemp -d)"',
        "trap 'rm -rf \"$work\"' EXIT",
        '/usr/bin/ditto -x -k "$pkg" "$work"',
        'case "$(uname -m)" in',
    ]
    for target in targets:
        machine = arch_names.get(target.arch, target.arch)
        lines.append(f"  {machine}) bin={_shell_quote(_basename(target.binary))}; sum={target.binary_sha256} ;;")
    lines += [
        '  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;',
        "esac",
        'echo "$sum  $work/$bin" | /usr/bin/shasum -a 256 -c -',
        f'install -m 0755 "$work/$bin" {_shell_quote(install_path)}',
    ]
    return lines


def jamf_policy(*, runtime: str, version: str, channel: Channel, policy: ChannelPolicy,
                targets: Sequence[WorkstationTarget], installers: InstallersDocument,
                package_name: str, package: bytes) -> dict[str, Any]:
    paths = _install_paths(installers)
    install_path = next((paths[t.installer_target] for t in targets if t.installer_target in paths),
                        f"/usr/local/bin/{runtime}")
    return {
        "schema_version": JAMF_SCHEMA,
        "policy_name": f"Ringward {runtime} {channel.channel}",
        "trigger": f"{runtime}-{channel.channel}",
        "channel": channel.channel,
        "version": version,
        "approval_required": True,
        "rollback_required": True,
        "soak_hours": soak_hours(policy),
        "targets": [export_target(t) for t in targets],
        "install_script": jamf_install_script(runtime, version, channel.channel, package_name, targets, install_path),
        "artifact_dir": JAMF_DIR,
        "package": artifact_entry(package_name, package),
    }


def intune_install_script(binary: str, sha256: str, install_path: str) -> bytes:
    lines = [
        "# Ringward install: copy the released binary after checking its SHA-256",
        "$ErrorActionPreference = 'Stop'",
        f"$source = Join-Path $PSScriptRoot {powershell_single_quoted(binary)}",
        f"$expected = {powershell_single_quoted(sha256)}",
        "$actual = (Get-FileHash -LiteralPath $source -Algorithm SHA256).Hash.ToLowerInvariant()",
        'if ($actual -ne $expected) { throw "checksum mismatch: expected $expected, found $actual" }',
        f"$target = [Environment]::ExpandEnvironmentVariables({powershell_single_quoted(install_path)})",
        "New-Item -ItemType Directory -Force -Path (Split-Path -Parent $target) | Out-Null",
        "Copy-Item -LiteralPath $source -Destination $target -Force",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def intune_rollback_script(install_path: str) -> bytes:
    lines = [
        "# Ringward uninstall: remove the installed binary (the previous release is restored by its own app)",
        "$ErrorActionPreference = 'Stop'",
        f"$target = [Environment]::ExpandEnvironmentVariables({powershell_single_quoted(install_path)})",
        "if (Test-Path -LiteralPath $target) { Remove-Item -LiteralPath $target -Force }",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def intune_app(*, runtime: str, version: str, channel: Channel, targets: Sequence[WorkstationTarget],
               installers: InstallersDocument, content: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """``intune-win32-app.json``; ``content`` is the files under ``intune/`` (install script first)."""
    paths = _install_paths(installers)
    install_path = next((paths[t.installer_target] for t in targets if t.installer_target in paths),
                        f"%ProgramFiles%\\Ringward\\{runtime}.exe")
    setup = content[0][0]
    uninstall = next((name for name, _ in content if name.startswith("rollback-")), setup)
    return {
        "schema_version": INTUNE_SCHEMA,
        "display_name": f"Ringward {runtime} {channel.channel}",
        "channel": channel.channel,
        "version": version,
        "install_behavior": "system",
        "install_command": f"powershell.exe -ExecutionPolicy Bypass -File {setup}",
        "uninstall_command": f"powershell.exe -ExecutionPolicy Bypass -File {uninstall}",
        "detection_rule": {
            "type": "file_sha256",
            "path": install_path,
            "sha256_values": sorted({t.binary_sha256 for t in targets}),
        },
        "targets": [export_target(t) for t in targets],
        "approval_required": True,
        "rollback_required": True,
        "artifact_dir": INTUNE_DIR,
        "setup_file": setup,
        "content": [artifact_entry(name, data) for name, data in content],
    }


def linux_install_script(runtime: str, version: str, channel: str, targets: Sequence[WorkstationTarget],
                         install_path: str) -> bytes:
    arch_names = {"amd64": "x86_64|amd64", "arm64": "aarch64|arm64"}
    lines = [
        "#!/bin/sh",
        "set -eu",
        f"# {runtime} {version} (channel {channel}): install this machine's binary after checking its SHA-256",
        'case "$(uname -m)" in',
    ]
    for target in targets:
        machine = arch_names.get(target.arch, target.arch)
        lines.append(f"  {machine}) bin={_shell_quote(_basename(target.binary))}; sum={target.binary_sha256} ;;")
    lines += [
        '  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;',
        "esac",
        'echo "$sum  $bin" | sha256sum -c -',
        f'install -m 0755 "$bin" {_shell_quote(install_path)}',
        f"systemctl restart {_shell_quote(runtime)} 2>/dev/null || true",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def linux_manifest(*, runtime: str, version: str, commit: str, channel: Channel, policy: ChannelPolicy,
                   targets: Sequence[WorkstationTarget], script_name: str, script: bytes) -> dict[str, Any]:
    return {
        "schema_version": LINUX_SCHEMA,
        "channel": channel.channel,
        "version": version,
        "commit": commit,
        "runtime": runtime,
        "approval_required": True,
        "rollback_required": True,
        "soak_hours": soak_hours(policy),
        "rollout_rings": [r.model_dump(mode="json") for r in policy.rollout_rings],
        "install_script": script_name,
        "install_script_sha256": hashlib.sha256(script).hexdigest(),
        "targets": [export_target(t) for t in targets],
    }


# --- the manifest --------------------------------------------------------------------------------------


def render_export_summary(manifest: dict[str, Any]) -> bytes:
    release = manifest["release"]
    approval = manifest["approval"]
    lines = [
        f"# Endpoint-management export {manifest['export_id']}",
        "",
        f"- Release: `{release.get('runtime')}` {release['version']} (commit `{release['commit']}`)",
        f"- Channel: `{manifest['channel']}` -> ring `{manifest['target_ring']}`"
        + (" (ROLLBACK export)" if manifest.get("rollback") else ""),
        f"- Approval: `{approval['approval_id']}` for request `{approval['request_id']}` "
        f"(`{approval['action']}`, target `{approval['target']}`, subject `{approval['subject_digest']}`)",
        f"- Exported at {manifest['created_at']} by {manifest['exported_by']}",
        "",
        "## Providers",
        "",
    ]
    for entry in manifest["providers"]:
        ids = ", ".join(t["id"] for t in entry["targets"]) or "no targets"
        lines.append(f"- {entry['provider']}: `{entry['file']}` ({ids})")
    lines += ["", "## Controls", ""] + [f"- {c}" for c in manifest["controls"]]
    lines += [
        "",
        "Import into the endpoint tool stays a reviewed step. Publish with "
        f"`ringward endpoint deliver {EXPORT_MANIFEST} --config connectors.yaml`.",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


class ExportRelease(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: str = Field(min_length=1, max_length=256)
    commit: str = Field(max_length=256)
    repository: str | None = None
    runtime: str | None = None


class ExportApproval(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    required: bool
    request_id: str = Field(min_length=1, max_length=64)
    approval_id: str = Field(min_length=1, max_length=64)
    action: str | None = None
    target: str | None = None
    subject_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")


class ExportProvider(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    provider: Literal["jamf", "intune", "linux"]
    file: str
    files: list[str] = []
    targets: list[dict[str, Any]] = []


class ExportManifest(BaseModel):
    """``endpoint-management-export-manifest.json`` as read back by ``endpoint deliver``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal["cavra.endpoint-management-export.v1"]
    export_id: str = Field(min_length=1, max_length=64)
    created_at: str
    channel: str = Field(min_length=1, max_length=64)
    target_ring: str = Field(min_length=1, max_length=128)
    provider: str
    providers: list[ExportProvider] = Field(min_length=1)
    release: ExportRelease
    approval: ExportApproval
    controls: list[str] = []
    files: list[str] = []

    @property
    def provider_names(self) -> list[str]:
        return [p.provider for p in self.providers]

    def expected_files(self, providers: Sequence[str]) -> list[str]:
        """What the export must hold for ``providers`` (reference rule plus the installer files)."""
        names = [EXPORT_MANIFEST, EXPORT_SUMMARY, CHECKSUMS]
        for entry in self.providers:
            if entry.provider in providers:
                names += [entry.file, *entry.files]
        return list(dict.fromkeys(names))


def parse_export_manifest(data: Any, *, source: str) -> ExportManifest:
    """Raises MalformedDocumentError naming the first field that does not fit (the reference's
    "invalid schema_version" included)."""
    if not isinstance(data, dict):
        raise MalformedDocumentError(f"{source}: expected a JSON object, found {type(data).__name__}")
    if data.get("schema_version") != EXPORT_MANIFEST_SCHEMA:
        raise MalformedDocumentError(
            f"{source}: endpoint-management export manifest has an invalid schema_version: expected "
            f"{EXPORT_MANIFEST_SCHEMA!r}, found {data.get('schema_version')!r}"
        )
    try:
        manifest = ExportManifest.model_validate(data)
    except ValidationError as exc:
        raise MalformedDocumentError(f"{source}: {validation_problem(exc)}") from exc
    if len(set(manifest.provider_names)) != len(manifest.providers):
        raise MalformedDocumentError(f"{source}: providers: a provider is listed twice")
    return manifest


def publication_document(
    manifest: ExportManifest,
    *,
    raw_manifest: dict[str, Any],
    providers: Sequence[str],
    provider_files: dict[str, dict[str, Any]],
    artifacts: list[dict[str, Any]],
    requested_by: str,
    created_at: datetime,
    linux_script: str | None,
) -> dict[str, Any]:
    """The ``cavra.endpoint-management-publication.v1`` event document (§4.8)."""
    selected = [p for p in PROVIDERS if p in providers]
    publication_id = publication_id_for(manifest.export_id, manifest.channel, manifest.release.version, selected)
    payloads: dict[str, dict[str, Any]] = {}
    for name in selected:
        payload = dict(provider_files[name])
        payload["publication_context"] = {"provider": name, "channel": manifest.channel}
        if name == "linux" and linux_script is not None:
            payload["install_script_content"] = linux_script
        payloads[name] = payload
    return {
        "schema_version": PUBLICATION_SCHEMA,
        "event_type": PUBLICATION_EVENT_TYPE,
        "event_id": publication_id,
        "publication_id": publication_id,
        "export_id": manifest.export_id,
        "session_id": manifest.export_id,
        "created_at": created_at.isoformat(),
        "requested_by": requested_by,
        "channel": manifest.channel,
        "target_ring": manifest.target_ring,
        "provider": ",".join(selected) if len(selected) != len(manifest.providers) else manifest.provider,
        "providers": selected,
        "release": manifest.release.model_dump(mode="json"),
        "approval": {
            "required": manifest.approval.required,
            "approval_id": manifest.approval.approval_id,
            "request_id": manifest.approval.request_id,
        },
        "controls": list(PUBLICATION_CONTROLS),
        "artifacts": artifacts,
        "provider_payloads": payloads,
        "manifest": raw_manifest,
    }
