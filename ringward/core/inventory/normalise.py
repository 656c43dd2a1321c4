"""Provider payloads -> ``cavra.endpoint-observations.v1`` endpoints (cavra-spec §8.2, plus ``fleet``).

Each provider reads its vendor's documented export first and the reference's flat key lists only
as a fallback, so both a real Jamf Pro ``computers-inventory`` page and a reference-style
``{"computers": [{"id": ..., "version": ...}]}`` normalise:

- **jamf**: ``GET /api/v1|v2|v3/computers-inventory`` pages (``results[]`` with ``udid``,
  ``general`` {name, reportDate (last inventory), lastContactTime (last check-in),
  remoteManagement.managed, extensionAttributes[]}, ``hardware`` {serialNumber,
  processorArchitecture}, ``operatingSystem``, ``applications[]`` {name, bundleId, version,
  cfBundleShortVersionString (v3; preferred, marketing version)}). A command-line runtime is no
  ``.app`` bundle, so the usual source is an extension attribute named ``<software> version`` /
  ``<software> sha256`` / ``deployment target``; Jamf itself reports no file checksum.
- **intune**: Microsoft Graph ``managedDevices`` (``value[]`` with ``id``, ``deviceName``,
  ``serialNumber``, ``operatingSystem``, ``processorArchitecture``, ``complianceState``,
  ``managementState``, ``lastSyncDateTime``) with ``detectedApps`` expanded per device
  (``$expand=detectedApps``), or a top-level ``detectedApps[]`` whose ``managedDevices`` relationship
  names the devices. detectedApp carries no checksum; inventory refreshes on sync.
- **fleet**: Fleet ``GET /api/v1/fleet/hosts?populate_software=true`` (``hosts[]`` with ``uuid``,
  ``hardware_serial``, ``platform``, ``cpu_type``, ``status``, ``seen_time`` (check-in),
  ``software_updated_at`` (inventory; null or Go's zero time when never), ``software[]``) or the
  host-software form (``installed_versions[]`` with ``signature_information[]``). Only
  ``executable_sha256`` is a file checksum; ``hash_sha256`` is the macOS CDHash and is never used.
- **linux**: Ansible facts (``ansible_facts.packages`` name -> [{version, release, epoch, arch}],
  hosts as a list or a ``hostname -> hostvars`` mapping) or a collector's flat records.
- **edr**: CrowdStrike Falcon device details and Falcon Discover applications (``resources[]``),
  Microsoft Defender advanced hunting rows (``Results[]`` / ``value[]`` of
  DeviceTvmSoftwareInventory and DeviceFileEvents with ``SHA256``). An EDR agent's own
  ``agent_version`` is never taken for the runtime's version (the reference's key list would).

The deployment target is what the record names (reference keys, a Jamf extension attribute), else
derived from OS and architecture with the package's template ids (``macos-jamf-arm64-workstation``,
``windows-intune-amd64-workstation``, ``linux-systemd-amd64-workstation``), else
``unknown-target``. Malformed input raises one :class:`InputError` naming provider, record index and
field; the caller keeps the raw payload as evidence either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ringward.core.common.versions import version_or_none
from ringward.core.errors import InputError, validation_problem
from ringward.core.inventory.observations import (
    OBSERVATIONS_SCHEMA,
    UNKNOWN_TARGET,
    Endpoint,
    ObservationsDocument,
    Provider,
    format_timestamp,
)

#: most endpoint records one payload may hold
MAX_RECORDS = 2_000_000

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: Go's zero time, which Fleet reports for "never"
_ZERO_TIMES = ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z")
_ISO = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})$"
)

# reference key lists (cavra-spec §8.2), the fallback for records that are not in a vendor's shape
RECORD_KEYS: dict[str, tuple[str, ...]] = {
    "jamf": ("results", "computers", "devices", "endpoints", "items"),
    "intune": ("value", "devices", "managedDevices", "endpoints", "items"),
    "fleet": ("hosts", "endpoints", "items", "devices"),
    "linux": ("endpoints", "hosts", "nodes", "items", "devices"),
    "edr": ("resources", "Results", "value", "assets", "devices", "endpoints", "hosts", "items"),
}
REF_ID = ("endpoint_id", "device_id", "deviceId", "id", "udid", "serial_number", "serialNumber", "computer_id",
          "hostname", "name", "deviceName")
REF_TARGET = ("deployment_target", "target_id", "target", "assignment", "policy_name", "policyName", "smart_group",
              "group", "collection", "deploymentGroup")
REF_VERSION = ("installed_version", "runtime_version", "cavra_version", "version", "app_version",
               "applicationVersion", "detectedVersion")
REF_SHA = ("binary_sha256", "installed_binary_sha256", "runtime_sha256", "cavra_sha256", "sha256", "checksum",
           "fileHash")
REF_SEEN = ("last_seen_at", "lastSeen", "last_contact_time", "lastContactTime", "lastCheckInDateTime", "report_date",
            "updated_at", "check_in_time")
REF_HOST = ("hostname", "computerName", "deviceName", "name")
REF_SERIAL = ("serial_number", "serialNumber", "serial")
REF_OS = ("os", "operatingSystem", "platform")
REF_STATE = ("management_state", "managed", "complianceState", "status")

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "intel": "amd64", "x86-64": "amd64",
         "arm64": "arm64", "arm64e": "arm64", "aarch64": "arm64", "apple silicon": "arm64"}
_LINUX_PLATFORMS = frozenset({"linux", "ubuntu", "debian", "rhel", "centos", "fedora", "amzn", "arch", "sles",
                              "suse", "opensuse", "rocky", "almalinux", "oracle", "gentoo", "manjaro", "pop", "kali"})


@dataclass(frozen=True)
class NormalisedInventory:
    """The endpoints a payload reports, in payload order, plus what the payload said about itself."""

    endpoints: tuple[Endpoint, ...]
    warnings: tuple[str, ...]
    source_schema_version: str | None
    observed_at: str | None
    channel: str | None


@dataclass
class _Ctx:
    provider: str
    software: tuple[str, ...]
    index: int = 0
    warnings: list[str] = field(default_factory=list)

    def bad(self, where: str, problem: str) -> InputError:
        return InputError(f"{self.provider} record {self.index}: {where}: {problem}")


# --- value checks ----------------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _found(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(ctx: _Ctx, where: str, value: Any) -> str | None:
    if _empty(value):
        return None
    if isinstance(value, bool):
        return "managed" if value else "unmanaged"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise ctx.bad(where, f"expected a string, found {type(value).__name__} {_found(value)}")
    text = value.strip()
    return text or None


def _time(ctx: _Ctx, where: str, value: Any) -> str | None:
    """A vendor timestamp as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``; Go's zero time is "never" (None)."""
    if _empty(value) or value in _ZERO_TIMES:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**11:
        return format_timestamp(datetime.fromtimestamp(value / 1000, UTC))  # epoch milliseconds (Jamf events)
    if not isinstance(value, str):
        raise ctx.bad(where, f"expected an ISO-8601 time with a zone, found {_found(value)}")
    match = _ISO.match(value.strip())
    if match is None:
        raise ctx.bad(where, f"expected an ISO-8601 time with a zone, found {_found(value)}")
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    text = f"{day}T{clock}{'.' + fraction[:6].ljust(6, '0') if fraction else ''}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ctx.bad(where, f"expected an ISO-8601 time with a zone, found {_found(value)}") from exc
    if parsed.year < 1971:
        return None
    return format_timestamp(parsed)


def _sha(ctx: _Ctx, where: str, value: Any) -> str | None:
    if _empty(value):
        return None
    if not isinstance(value, str) or not _HEX64.match(value.strip()):
        raise ctx.bad(where, f"expected a 64-hex SHA-256, found {_found(value)}")
    return value.strip().lower()


def _dict(ctx: _Ctx, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.bad(where, f"expected an object, found {type(value).__name__}")
    return value


def _list(ctx: _Ctx, where: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.bad(where, f"expected a list, found {type(value).__name__}")
    return value


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _is_software(name: Any, software: tuple[str, ...], *, bundle_id: Any = None) -> bool:
    if isinstance(name, str):
        base = name.strip()
        if base.lower().endswith(".app"):
            base = base[:-4]
        base = base.rsplit("/", 1)[-1]
        if _norm(base) in {_norm(s) for s in software}:
            return True
    if isinstance(bundle_id, str) and bundle_id:
        return _norm(bundle_id.rsplit(".", 1)[-1]) in {_norm(s) for s in software}
    return False


def _arch(value: Any) -> str | None:
    return _ARCH.get(value.strip().lower()) if isinstance(value, str) else None


def _os_family(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text in ("darwin", "mac", "macos", "mac os x", "osx") or text.startswith("macos"):
        return "macos"
    if text.startswith("windows"):
        return "windows"
    if text in _LINUX_PLATFORMS or "linux" in text:
        return "linux"
    return None


def derived_target(os_family: str | None, arch: str | None) -> str | None:
    """The endpoint-deployment template id for an (OS, architecture) surface (cavra-spec §2.3)."""
    if os_family is None or arch is None:
        return None
    return {"macos": f"macos-jamf-{arch}-workstation", "windows": f"windows-intune-{arch}-workstation",
            "linux": f"linux-systemd-{arch}-workstation"}.get(os_family)


def _pick_version(ctx: _Ctx, endpoint_id: str, versions: Iterable[str]) -> str | None:
    """The highest SemVer of several installs (a host may carry more than one), with a warning."""
    distinct = sorted(set(versions))
    if not distinct:
        return None
    if len(distinct) > 1:
        ctx.warnings.append(f"endpoint {endpoint_id} reports {len(distinct)} versions of "
                            f"{'/'.join(ctx.software)}: {', '.join(distinct)}; the highest is compared")
    semver = [(parsed, v) for v in distinct if (parsed := version_or_none(v)) is not None]
    if semver:
        best: str = max(semver, key=lambda pair: pair[0])[1]
        return best
    return distinct[-1]


def _endpoint(ctx: _Ctx, **values: Any) -> Endpoint:
    checkin, inventory = values.get("last_checkin_at"), values.get("last_inventory_at")
    values.setdefault("last_seen_at", inventory or checkin)
    values["provider"] = ctx.provider
    if not values.get("deployment_target"):
        values["deployment_target"] = UNKNOWN_TARGET
    try:
        return Endpoint(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise ctx.bad("endpoint", validation_problem(exc)) from exc


# --- the reference's generic lookup (fallback) ---------------------------------------------------------


def _lookup(item: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any] | None:
    nested = item.get("cavra") if isinstance(item.get("cavra"), dict) else item.get("runtime")
    for source, prefix in ((item, ""), (nested if isinstance(nested, dict) else {}, "cavra.")):
        for key in keys:
            if not _empty(source.get(key)):
                return prefix + key, source[key]
    return None


def _ref(ctx: _Ctx, item: Mapping[str, Any], keys: tuple[str, ...], convert: Callable[..., Any]) -> Any:
    found = _lookup(item, keys)
    return None if found is None else convert(ctx, found[0], found[1])


def _reference_record(ctx: _Ctx, item: Mapping[str, Any]) -> Endpoint:
    endpoint_id = _ref(ctx, item, REF_ID, _text) or f"{ctx.provider}-endpoint-{ctx.index}"
    seen = _ref(ctx, item, REF_SEEN, _time)
    return _endpoint(
        ctx,
        endpoint_id=endpoint_id,
        deployment_target=_ref(ctx, item, REF_TARGET, _text),
        installed_version=_ref(ctx, item, REF_VERSION, _text),
        binary_sha256=_ref(ctx, item, REF_SHA, _sha),
        last_seen_at=seen,
        hostname=_ref(ctx, item, REF_HOST, _text),
        serial_number=_ref(ctx, item, REF_SERIAL, _text),
        os=_ref(ctx, item, REF_OS, _text),
        management_state=_ref(ctx, item, REF_STATE, _text),
    )


def _explicit_target(ctx: _Ctx, item: Mapping[str, Any]) -> str | None:
    target: str | None = _ref(ctx, item, ("deployment_target", "target_id"), _text)
    return target


def _nested(ctx: _Ctx, item: Mapping[str, Any], keys: tuple[str, ...], convert: Callable[..., Any]) -> Any:
    """A value from the record's own ``cavra`` / ``runtime`` object (a collector's report)."""
    for name in ("cavra", "runtime"):
        nested = item.get(name)
        if isinstance(nested, dict):
            for key in keys:
                if not _empty(nested.get(key)):
                    return convert(ctx, f"{name}.{key}", nested[key])
    return None


# --- jamf ---------------------------------------------------------------------------------------------


def _jamf(ctx: _Ctx, item: dict[str, Any]) -> Endpoint:
    general = _dict(ctx, "general", item.get("general"))
    hardware = _dict(ctx, "hardware", item.get("hardware"))
    system = _dict(ctx, "operatingSystem", item.get("operatingSystem"))
    remote = _dict(ctx, "general.remoteManagement", general.get("remoteManagement"))
    endpoint_id = (_text(ctx, "udid", item.get("udid")) or _text(ctx, "id", item.get("id"))
                   or f"{ctx.provider}-endpoint-{ctx.index}")
    attributes: dict[str, str] = {}
    for position, attribute in enumerate(_list(ctx, "general.extensionAttributes", general.get("extensionAttributes"))
                                         + _list(ctx, "extensionAttributes", item.get("extensionAttributes"))):
        where = f"extensionAttributes[{position}]"
        attribute = _dict(ctx, where, attribute)
        values = _list(ctx, f"{where}.values", attribute.get("values"))
        value = _text(ctx, f"{where}.values[0]", values[0]) if values else None
        if isinstance(attribute.get("name"), str) and value is not None:
            attributes[_norm(attribute["name"])] = value
    soft = {_norm(s) for s in ctx.software}
    ea_version = next((v for k, v in attributes.items() if "version" in k and any(s in k for s in soft)), None)
    ea_sha = next((v for k, v in attributes.items() if "sha256" in k), None)
    ea_target = next((v for k, v in attributes.items() if "deploymenttarget" in k), None)
    versions = []
    for position, app in enumerate(_list(ctx, "applications", item.get("applications"))):
        app = _dict(ctx, f"applications[{position}]", app)
        if _is_software(app.get("name"), ctx.software, bundle_id=app.get("bundleId")):
            version = (_text(ctx, f"applications[{position}].cfBundleShortVersionString",
                             app.get("cfBundleShortVersionString"))
                       or _text(ctx, f"applications[{position}].version", app.get("version")))
            if version:
                versions.append(version)
    version = ea_version or _nested(ctx, item, REF_VERSION, _text) or _pick_version(ctx, endpoint_id, versions)
    arch = _arch(hardware.get("processorArchitecture")) or _arch(hardware.get("processorType"))
    os_name = _text(ctx, "operatingSystem.name", system.get("name")) or _text(ctx, "general.platform",
                                                                                 general.get("platform"))
    target = (_explicit_target(ctx, item) or ea_target
              or derived_target(_os_family(os_name) or _os_family(general.get("platform")), arch))
    managed = remote.get("managed")
    return _endpoint(
        ctx,
        endpoint_id=endpoint_id,
        deployment_target=target,
        installed_version=version,
        binary_sha256=(_sha(ctx, "extensionAttributes.sha256", ea_sha) if ea_sha else None)
        or _nested(ctx, item, REF_SHA, _sha),
        hostname=_text(ctx, "general.name", general.get("name")),
        serial_number=_text(ctx, "hardware.serialNumber", hardware.get("serialNumber")),
        os=" ".join(p for p in (os_name, _text(ctx, "operatingSystem.version", system.get("version"))) if p) or None,
        management_state=None if managed is None else ("managed" if managed is True else "unmanaged"),
        last_checkin_at=_time(ctx, "general.lastContactTime", general.get("lastContactTime")),
        last_inventory_at=_time(ctx, "general.reportDate", general.get("reportDate")),
    )


def _is_jamf(item: Mapping[str, Any]) -> bool:
    return isinstance(item.get("general"), dict) or isinstance(item.get("hardware"), dict)


# --- intune --------------------------------------------------------------------------------------------


def _intune(ctx: _Ctx, item: dict[str, Any], apps_by_device: Mapping[str, list[str]]) -> Endpoint:
    endpoint_id = _text(ctx, "id", item.get("id")) or f"{ctx.provider}-endpoint-{ctx.index}"
    versions = list(apps_by_device.get(endpoint_id, ()))
    for position, app in enumerate(_list(ctx, "detectedApps", item.get("detectedApps"))):
        app = _dict(ctx, f"detectedApps[{position}]", app)
        if _is_software(app.get("displayName"), ctx.software):
            version = _text(ctx, f"detectedApps[{position}].version", app.get("version"))
            if version:
                versions.append(version)
    version = _nested(ctx, item, REF_VERSION, _text) or _pick_version(ctx, endpoint_id, versions)
    os_name = _text(ctx, "operatingSystem", item.get("operatingSystem"))
    arch = _arch(item.get("processorArchitecture")) or ("amd64" if _os_family(os_name) == "windows" else None)
    sync = _time(ctx, "lastSyncDateTime", item.get("lastSyncDateTime"))
    return _endpoint(
        ctx,
        endpoint_id=endpoint_id,
        deployment_target=_explicit_target(ctx, item) or derived_target(_os_family(os_name), arch),
        installed_version=version,
        binary_sha256=_nested(ctx, item, REF_SHA, _sha),
        hostname=_text(ctx, "deviceName", item.get("deviceName")),
        serial_number=_text(ctx, "serialNumber", item.get("serialNumber")),
        os=" ".join(p for p in (os_name, _text(ctx, "osVersion", item.get("osVersion"))) if p) or None,
        management_state=_text(ctx, "complianceState", item.get("complianceState"))
        or _text(ctx, "managementState", item.get("managementState")),
        # detected apps refresh on the device's sync, so the sync time is both clocks
        last_checkin_at=sync,
        last_inventory_at=sync,
    )


def _is_intune(item: Mapping[str, Any]) -> bool:
    return any(k in item for k in ("deviceName", "lastSyncDateTime", "detectedApps", "managedDeviceOwnerType"))


def _intune_apps(ctx: _Ctx, payload: Mapping[str, Any]) -> dict[str, list[str]]:
    """device id -> versions, from ``detectedApps[].managedDevices[]`` (the per-app relationship)."""
    out: dict[str, list[str]] = {}
    for position, app in enumerate(_list(ctx, "detectedApps", payload.get("detectedApps"))):
        ctx.index = position
        app = _dict(ctx, f"detectedApps[{position}]", app)
        if not _is_software(app.get("displayName"), ctx.software):
            continue
        version = _text(ctx, f"detectedApps[{position}].version", app.get("version"))
        for device_position, device in enumerate(_list(ctx, f"detectedApps[{position}].managedDevices",
                                                       app.get("managedDevices"))):
            device_id = device.get("id") if isinstance(device, dict) else device
            key = _text(ctx, f"detectedApps[{position}].managedDevices[{device_position}].id", device_id)
            if key and version:
                out.setdefault(key, []).append(version)
    return out


# --- fleet ---------------------------------------------------------------------------------------------


def _fleet(ctx: _Ctx, item: dict[str, Any]) -> Endpoint:
    endpoint_id = (_text(ctx, "uuid", item.get("uuid")) or _text(ctx, "hardware_serial", item.get("hardware_serial"))
                   or _text(ctx, "id", item.get("id")) or f"{ctx.provider}-endpoint-{ctx.index}")
    versions: list[str] = []
    hashes: set[str] = set()
    for position, software in enumerate(_list(ctx, "software", item.get("software"))):
        where = f"software[{position}]"
        software = _dict(ctx, where, software)
        if not _is_software(software.get("name"), ctx.software, bundle_id=software.get("bundle_identifier")):
            continue
        installs = _list(ctx, f"{where}.installed_versions", software.get("installed_versions")) or [software]
        for install_position, install in enumerate(installs):
            install_where = f"{where}.installed_versions[{install_position}]" if install is not software else where
            install = _dict(ctx, install_where, install)
            version = _text(ctx, f"{install_where}.version", install.get("version"))
            if version:
                versions.append(version)
            for sig_position, signature in enumerate(_list(ctx, f"{install_where}.signature_information",
                                                           install.get("signature_information"))):
                sig_where = f"{install_where}.signature_information[{sig_position}]"
                signature = _dict(ctx, sig_where, signature)
                # hash_sha256 is the macOS code-directory hash, not the file's SHA-256: never used
                digest = _sha(ctx, f"{sig_where}.executable_sha256", signature.get("executable_sha256"))
                if digest:
                    hashes.add(digest)
    if len(hashes) > 1:
        ctx.warnings.append(f"endpoint {endpoint_id} reports {len(hashes)} different executable SHA-256s; "
                            "checksum drift is judged on the first in sorted order")
    platform = item.get("platform")
    os_family = _os_family(platform) or _os_family(item.get("platform_like"))
    return _endpoint(
        ctx,
        endpoint_id=endpoint_id,
        deployment_target=_explicit_target(ctx, item) or derived_target(os_family, _arch(item.get("cpu_type"))),
        installed_version=_nested(ctx, item, REF_VERSION, _text) or _pick_version(ctx, endpoint_id, versions),
        binary_sha256=_nested(ctx, item, REF_SHA, _sha) or (sorted(hashes)[0] if hashes else None),
        hostname=_text(ctx, "hostname", item.get("hostname")) or _text(ctx, "computer_name", item.get("computer_name")),
        serial_number=_text(ctx, "hardware_serial", item.get("hardware_serial")),
        os=_text(ctx, "os_version", item.get("os_version")) or _text(ctx, "platform", platform),
        management_state=_text(ctx, "status", item.get("status")),
        last_checkin_at=_time(ctx, "seen_time", item.get("seen_time")),
        last_inventory_at=_time(ctx, "software_updated_at", item.get("software_updated_at")),
    )


def _is_fleet(item: Mapping[str, Any]) -> bool:
    return any(k in item for k in ("seen_time", "software_updated_at", "hardware_serial", "osquery_version"))


# --- linux (Ansible facts or a collector) -------------------------------------------------------------


def _linux(ctx: _Ctx, item: dict[str, Any], hostname: str | None) -> Endpoint:
    facts = _dict(ctx, "ansible_facts", item.get("ansible_facts"))

    def fact(name: str) -> Any:
        return facts.get(name, facts.get(f"ansible_{name}", item.get(f"ansible_{name}")))

    host = (hostname or _text(ctx, "inventory_hostname", item.get("inventory_hostname"))
            or _text(ctx, "ansible_facts.fqdn", fact("fqdn")) or _text(ctx, "ansible_facts.hostname", fact("hostname")))
    endpoint_id = _text(ctx, "endpoint_id", item.get("endpoint_id")) or host or f"{ctx.provider}-endpoint-{ctx.index}"
    packages = _dict(ctx, "ansible_facts.packages", fact("packages"))
    versions = []
    for name, entries in packages.items():
        if not _is_software(name, ctx.software):
            continue
        for position, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            entry = _dict(ctx, f"ansible_facts.packages.{name}[{position}]", entry)
            version = _text(ctx, f"ansible_facts.packages.{name}[{position}].version", entry.get("version"))
            if version:
                versions.append(version)
    date_time = _dict(ctx, "ansible_facts.date_time", fact("date_time"))
    gathered = _time(ctx, "ansible_facts.date_time.iso8601", date_time.get("iso8601"))
    return _endpoint(
        ctx,
        endpoint_id=endpoint_id,
        deployment_target=_explicit_target(ctx, item) or derived_target("linux", _arch(fact("architecture"))),
        installed_version=_nested(ctx, item, REF_VERSION, _text) or _pick_version(ctx, endpoint_id, versions),
        binary_sha256=_nested(ctx, item, REF_SHA, _sha),
        hostname=host,
        serial_number=_text(ctx, "ansible_facts.product_serial", fact("product_serial")),
        os=" ".join(p for p in (_text(ctx, "ansible_facts.distribution", fact("distribution")),
                                _text(ctx, "ansible_facts.distribution_version", fact("distribution_version")))
                    if p) or None,
        management_state="managed",
        # facts are gathered in one pass: the gather time is both clocks
        last_checkin_at=gathered,
        last_inventory_at=gathered,
    )


def _is_ansible(item: Mapping[str, Any]) -> bool:
    return isinstance(item.get("ansible_facts"), dict) or "ansible_hostname" in item


# --- edr (Falcon, Defender) ----------------------------------------------------------------------------


@dataclass
class _EdrHost:
    endpoint_id: str
    index: int
    hostname: str | None = None
    os: str | None = None
    arch: str | None = None
    serial: str | None = None
    state: str | None = None
    seen: str | None = None
    inventory: str | None = None
    versions: list[str] = field(default_factory=list)
    hashes: set[str] = field(default_factory=set)


def _later(a: str | None, b: str | None) -> str | None:
    return max((t for t in (a, b) if t), default=None)


def _edr(ctx: _Ctx, records: list[tuple[int, dict[str, Any]]]) -> list[Endpoint]:
    hosts: dict[str, _EdrHost] = {}
    out: list[Endpoint] = []
    for index, item in records:
        ctx.index = index
        nested_host = item.get("host")
        if isinstance(nested_host, dict) and "name" in item:  # Falcon Discover application
            host_id = _text(ctx, "host.id", nested_host.get("id")) or _text(ctx, "host.hostname",
                                                                             nested_host.get("hostname"))
            if host_id is None:
                raise ctx.bad("host.id", "expected the application's host id, found none")
            host = hosts.setdefault(host_id, _EdrHost(host_id, index))
            host.hostname = host.hostname or _text(ctx, "host.hostname", nested_host.get("hostname"))
            host.os = host.os or _text(ctx, "host.platform_name", nested_host.get("platform_name"))
            host.inventory = _later(host.inventory, _time(ctx, "last_updated", item.get("last_updated")))
            if _is_software(item.get("name"), ctx.software):
                version = _text(ctx, "version", item.get("version"))
                if version:
                    host.versions.append(version)
            continue
        if "DeviceId" in item:  # Defender advanced hunting row
            host_id = _text(ctx, "DeviceId", item.get("DeviceId"))
            if host_id is None:
                raise ctx.bad("DeviceId", "expected a device id, found none")
            host = hosts.setdefault(host_id, _EdrHost(host_id, index))
            host.hostname = host.hostname or _text(ctx, "DeviceName", item.get("DeviceName"))
            host.os = host.os or _text(ctx, "OSPlatform", item.get("OSPlatform"))
            host.arch = host.arch or _arch(item.get("OSArchitecture"))
            host.inventory = _later(host.inventory, _time(ctx, "Timestamp", item.get("Timestamp")))
            if _is_software(item.get("SoftwareName"), ctx.software):
                version = _text(ctx, "SoftwareVersion", item.get("SoftwareVersion"))
                if version:
                    host.versions.append(version)
            if _is_software(item.get("FileName"), ctx.software) or _is_software(
                    str(item.get("FileName") or "").removesuffix(".exe"), ctx.software):
                digest = _sha(ctx, "SHA256", item.get("SHA256"))
                if digest:
                    host.hashes.add(digest)
            continue
        if "device_id" in item and "agent_version" in item:  # Falcon device details (no app inventory)
            host_id = _text(ctx, "device_id", item.get("device_id")) or f"{ctx.provider}-endpoint-{index}"
            host = hosts.setdefault(host_id, _EdrHost(host_id, index))
            host.hostname = _text(ctx, "hostname", item.get("hostname"))
            host.os = _text(ctx, "platform_name", item.get("platform_name"))
            host.serial = _text(ctx, "serial_number", item.get("serial_number"))
            host.state = _text(ctx, "status", item.get("status"))
            host.seen = _time(ctx, "last_seen", item.get("last_seen"))
            host.versions.extend(v for v in [_nested(ctx, item, REF_VERSION, _text)] if v)
            continue
        out.append(_reference_record(ctx, item))
    for host in hosts.values():
        ctx.index = host.index
        if len(host.hashes) > 1:
            ctx.warnings.append(f"endpoint {host.endpoint_id} reports {len(host.hashes)} different SHA-256s for "
                                f"{'/'.join(ctx.software)}; checksum drift is judged on the first in sorted order")
        out.append(_endpoint(
            ctx,
            endpoint_id=host.endpoint_id,
            deployment_target=derived_target(_os_family(host.os), host.arch),
            installed_version=_pick_version(ctx, host.endpoint_id, host.versions),
            binary_sha256=sorted(host.hashes)[0] if host.hashes else None,
            hostname=host.hostname,
            serial_number=host.serial,
            os=host.os,
            management_state=host.state,
            last_checkin_at=host.seen,
            last_inventory_at=host.inventory,
        ))
    return out


# --- entry point ---------------------------------------------------------------------------------------


def _records(provider: str, payload: Mapping[str, Any]) -> list[Any] | dict[str, Any] | None:
    for key in RECORD_KEYS[provider]:
        value = payload.get(key)
        if isinstance(value, list) or (provider == "linux" and key == "hosts" and isinstance(value, dict)):
            return value
    if provider == "fleet" and isinstance(payload.get("host"), dict):
        return [payload["host"]]
    return None


def _dedupe(ctx: _Ctx, endpoints: list[Endpoint]) -> list[Endpoint]:
    """One endpoint per id and per serial number: a re-enrolled device (same serial, new id) or a
    repeated record keeps its newest report, with a warning (first position kept)."""
    def clock(e: Endpoint) -> str:
        return e.last_inventory_at or e.last_checkin_at or e.last_seen_at or ""

    keep: dict[str, int] = {}
    out: list[Endpoint | None] = []
    for endpoint in endpoints:
        keys = [f"id:{endpoint.endpoint_id}"] + ([f"serial:{endpoint.serial_number}"] if endpoint.serial_number else [])
        position = next((keep[k] for k in keys if k in keep), None)
        if position is None:
            for key in keys:
                keep[key] = len(out)
            out.append(endpoint)
            continue
        kept = out[position]
        assert kept is not None
        newer = endpoint if clock(endpoint) > clock(kept) else kept
        older = kept if newer is endpoint else endpoint
        ctx.warnings.append(f"endpoint {older.endpoint_id} superseded by {newer.endpoint_id} "
                            f"(same {'id' if older.endpoint_id == newer.endpoint_id else 'serial number'}, "
                            "newest report kept)")
        out[position] = newer
        for key in [f"id:{newer.endpoint_id}"] + ([f"serial:{newer.serial_number}"] if newer.serial_number else []):
            keep[key] = position
    return [e for e in out if e is not None]


def normalise(provider: str, payload: Any, *, software: tuple[str, ...]) -> NormalisedInventory:
    """Every endpoint ``payload`` reports, normalised; see the module docstring.

    Raises:
        InputError: unknown provider, a payload that is not an object, or a malformed record
            (``<provider> record <index>: <field>: <problem>``).
    """
    if provider not in {p.value for p in Provider}:
        raise InputError(f"--provider: expected one of {', '.join(p.value for p in Provider)}, found {provider!r}")
    if not isinstance(payload, dict):
        raise InputError(f"{provider} inventory payload: expected a JSON object, found {type(payload).__name__}")
    if not software or not all(isinstance(s, str) and s.strip() for s in software):
        raise InputError("--software: expected at least one non-empty software name")
    ctx = _Ctx(provider, tuple(s.strip() for s in software))
    header_ctx = _Ctx(provider, ctx.software, index=-1)
    observed_at = _time(header_ctx, "observed_at", payload.get("observed_at")) or _time(
        header_ctx, "generated_at", payload.get("generated_at"))
    channel = _text(header_ctx, "channel", payload.get("channel"))
    schema = payload.get("schema_version") if isinstance(payload.get("schema_version"), str) else None
    if schema == OBSERVATIONS_SCHEMA:
        try:
            document = ObservationsDocument.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = [str(p) for p in first["loc"]]
            if len(location) >= 2 and location[0] == "endpoints":
                raise InputError(f"{provider} record {location[1]}: {'.'.join(location[2:]) or 'endpoint'}: "
                                 f"{first['msg']}") from exc
            raise InputError(f"{provider} inventory payload: {validation_problem(exc)}") from exc
        endpoints = [e.model_copy(update={
            "provider": e.provider or provider,
            "deployment_target": e.deployment_target or (e.model_extra or {}).get("target_id") or UNKNOWN_TARGET,
        }) for e in document.endpoints]
        return _finish(ctx, endpoints, schema, document.observed_at, document.channel)
    records = _records(provider, payload)
    apps_by_device = _intune_apps(ctx, payload) if provider == "intune" else {}
    endpoints = []
    if isinstance(records, dict):  # Ansible: hostname -> hostvars
        pairs: list[tuple[int, str | None, Any]] = [(i, str(k), v) for i, (k, v) in enumerate(records.items())]
    else:
        pairs = [(i, None, v) for i, v in enumerate(records or [])]
    if len(pairs) > MAX_RECORDS:
        raise InputError(f"{provider} inventory payload: {len(pairs)} records, expected at most {MAX_RECORDS}")
    if provider == "edr":
        endpoints = _edr(ctx, [(i, v) for i, _, v in pairs if isinstance(v, dict)])
    else:
        for index, hostname, item in pairs:
            if not isinstance(item, dict):
                continue  # reference rule: non-object entries are ignored
            ctx.index = index
            if provider == "jamf" and _is_jamf(item):
                endpoints.append(_jamf(ctx, item))
            elif provider == "intune" and _is_intune(item):
                endpoints.append(_intune(ctx, item, apps_by_device))
            elif provider == "fleet" and _is_fleet(item):
                endpoints.append(_fleet(ctx, item))
            elif provider == "linux" and (_is_ansible(item) or hostname is not None):
                endpoints.append(_linux(ctx, item, hostname))
            else:
                endpoints.append(_reference_record(ctx, item))
    return _finish(ctx, endpoints, schema, observed_at, channel)


def _finish(ctx: _Ctx, endpoints: list[Endpoint], schema: str | None, observed_at: str | None,
            channel: str | None) -> NormalisedInventory:
    endpoints = _dedupe(ctx, endpoints)
    if not endpoints:
        ctx.warnings.append(f"no endpoint records found for provider {ctx.provider}")
    for endpoint in endpoints:
        if endpoint.deployment_target == UNKNOWN_TARGET:
            ctx.warnings.append(f"endpoint {endpoint.endpoint_id} did not include a deployment target")
    if ctx.provider in ("jamf", "intune") and endpoints and not any(e.binary_sha256 for e in endpoints):
        ctx.warnings.append(f"{ctx.provider} reports no file checksum; checksum drift needs an extension "
                            "attribute or a collector reporting binary_sha256")
    return NormalisedInventory(tuple(endpoints), tuple(ctx.warnings), schema, observed_at, channel)
