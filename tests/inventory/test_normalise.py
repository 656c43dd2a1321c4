"""Provider normalisers: vendor shapes, the reference's flat keys, and one clear line per malformed record."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ringward.core.errors import InputError
from ringward.core.inventory.normalise import derived_target, normalise
from ringward.core.inventory.observations import UNKNOWN_TARGET
from tests.inventory import payloads
from tests.inventory.payloads import SHA_A

SOFT = ("rt",)


def by_id(provider: str, payload: Any) -> dict[str, dict[str, Any]]:
    return {e.endpoint_id: e.document() for e in normalise(provider, payload, software=SOFT).endpoints}


def test_jamf_computers_inventory_page() -> None:
    result = normalise("jamf", payloads.jamf_page(), software=SOFT)
    hosts = {e.endpoint_id: e for e in result.endpoints}
    first = hosts["6D8C2F4A-0001"]
    # the extension attributes carry a CLI runtime's version and checksum
    assert first.installed_version == "1.2.3" and first.binary_sha256 == SHA_A
    assert first.deployment_target == "macos-jamf-arm64-workstation"
    assert first.last_checkin_at == "2026-11-22T11:02:00Z"
    assert first.last_inventory_at == "2026-11-22T09:15:30.123000Z"
    assert first.last_seen_at == first.last_inventory_at  # staleness uses the inventory clock
    assert first.hostname == "mac-studio-01" and first.serial_number == "C02AAA0001"
    assert first.management_state == "managed" and first.os == "macOS 15.1"
    second = hosts["6D8C2F4A-0002"]
    # v3's marketing version wins over "1.2.2 (812)"
    assert second.installed_version == "1.2.2" and second.binary_sha256 is None
    assert second.deployment_target == "macos-jamf-amd64-workstation"
    loaner = hosts["3"]
    assert loaner.deployment_target == UNKNOWN_TARGET and loaner.installed_version is None
    assert "endpoint 3 did not include a deployment target" in result.warnings
    assert not any("no file checksum" in w for w in result.warnings)


def test_jamf_without_checksums_warns_once() -> None:
    page = payloads.jamf_page()
    page["results"][0]["general"]["extensionAttributes"].pop()
    warnings = normalise("jamf", page, software=SOFT).warnings
    assert sum("reports no file checksum" in w for w in warnings) == 1


def test_intune_expanded_detected_apps() -> None:
    hosts = by_id("intune", payloads.intune_devices())
    assert hosts["0f1e2d3c-0001"] == {
        "endpoint_id": "0f1e2d3c-0001", "deployment_target": "windows-intune-amd64-workstation",
        "installed_version": "1.2.3", "last_seen_at": "2026-11-22T10:30:00Z", "provider": "intune",
        "hostname": "WIN-LAPTOP-01", "serial_number": "PF3XYZ01", "os": "Windows 10.0.22631.4460",
        "management_state": "compliant", "last_checkin_at": "2026-11-22T10:30:00Z",
        "last_inventory_at": "2026-11-22T10:30:00Z"}
    # present tenant-wide but not on this device: no version
    assert "installed_version" not in hosts["0f1e2d3c-0002"]
    assert hosts["0f1e2d3c-0002"]["deployment_target"] == "windows-intune-arm64-workstation"


def test_intune_detected_app_relationship_form() -> None:
    payload = payloads.intune_devices()
    for device in payload["value"]:
        device.pop("detectedApps")
    payload["detectedApps"] = [{"id": "app-1", "displayName": "rt", "version": "1.2.4", "deviceCount": 1,
                                "managedDevices": [{"id": "0f1e2d3c-0002", "deviceName": "WIN-LAPTOP-02"}]}]
    hosts = by_id("intune", payload)
    assert hosts["0f1e2d3c-0002"]["installed_version"] == "1.2.4"
    assert "installed_version" not in hosts["0f1e2d3c-0001"]


def test_fleet_hosts_and_host_software() -> None:
    result = normalise("fleet", payloads.fleet_hosts(), software=SOFT)
    hosts = {e.endpoint_id: e for e in result.endpoints}
    build = hosts["a1b2-0011"]
    # executable_sha256 is the file's hash; hash_sha256 (a CDHash) is never used
    assert build.binary_sha256 == SHA_A
    assert build.deployment_target == "linux-systemd-amd64-workstation"
    assert build.last_checkin_at == "2026-11-22T11:59:00Z" and build.last_inventory_at == "2026-11-22T11:00:00Z"
    mac = hosts["a1b2-0012"]
    assert mac.binary_sha256 is None  # only a CDHash was reported
    assert mac.last_inventory_at is None  # Go's zero time is "never"
    assert mac.last_seen_at == "2026-11-22T08:00:00Z"
    assert mac.installed_version == "1.3.0-rc.1"  # the highest of several installs
    assert mac.deployment_target == "macos-jamf-arm64-workstation"
    assert any("reports 2 versions" in w for w in result.warnings)


def test_fleet_single_host_detail() -> None:
    host = payloads.fleet_hosts()["hosts"][0]
    assert list(by_id("fleet", {"host": host})) == ["a1b2-0011"]


def test_linux_ansible_hostvars() -> None:
    hosts = by_id("linux", payloads.ansible_hostvars())
    assert hosts["web-1"]["installed_version"] == "1.2.3"
    assert hosts["web-1"]["binary_sha256"] == SHA_A
    assert hosts["web-1"]["deployment_target"] == "linux-systemd-amd64-workstation"
    assert hosts["web-1"]["last_inventory_at"] == "2026-11-22T11:30:00Z"
    assert hosts["web-2"]["deployment_target"] == "linux-systemd-arm64-workstation"
    assert "installed_version" not in hosts["web-2"]


def test_edr_falcon_and_defender() -> None:
    falcon = by_id("edr", payloads.edr_mixed())
    assert falcon["falcon-host-1"]["installed_version"] == "1.2.3"
    # the EDR agent's own version is never taken for the runtime's
    assert "installed_version" not in falcon["falcon-host-2"]
    assert falcon["falcon-host-2"]["last_checkin_at"] == "2026-11-22T11:00:00Z"
    defender = by_id("edr", payloads.defender_hunting())
    assert defender["mde-1"]["binary_sha256"] == SHA_A
    assert defender["mde-1"]["deployment_target"] == "windows-intune-amd64-workstation"


@pytest.mark.parametrize("provider,key", [("jamf", "computers"), ("intune", "devices"), ("linux", "nodes"),
                                          ("edr", "assets"), ("fleet", "endpoints")])
def test_reference_flat_records(provider: str, key: str) -> None:
    payload = {key: [{"deviceId": "d-1", "policyName": "linux-systemd-amd64-workstation",
                      "cavra": {"runtime_version": "1.2.3", "sha256": SHA_A.upper()},
                      "lastSeen": "2026-11-22T10:00:00+02:00", "status": "active"}, "not-an-object", 7]}
    (endpoint,) = normalise(provider, payload, software=SOFT).endpoints
    assert endpoint.document() == {
        "endpoint_id": "d-1", "deployment_target": "linux-systemd-amd64-workstation", "installed_version": "1.2.3",
        "binary_sha256": SHA_A, "last_seen_at": "2026-11-22T08:00:00Z", "provider": provider,
        "management_state": "active"}


def test_reference_defaults_and_empty_payload() -> None:
    (endpoint,) = normalise("linux", {"endpoints": [{"version": "1.2.3"}]}, software=SOFT).endpoints
    assert endpoint.endpoint_id == "linux-endpoint-0" and endpoint.deployment_target == UNKNOWN_TARGET
    empty = normalise("jamf", {"results": []}, software=SOFT)
    assert empty.endpoints == () and empty.warnings == ("no endpoint records found for provider jamf",)


def test_observations_document_passes_through() -> None:
    payload = {"schema_version": "cavra.endpoint-observations.v1", "provider": "linux", "channel": "beta",
               "observed_at": "2026-11-22T10:00:00Z",
               "endpoints": [{"endpoint_id": "e1", "deployment_target": "t", "installed_version": "1.2.3"}]}
    result = normalise("linux", payload, software=SOFT)
    assert result.channel == "beta" and result.observed_at == "2026-11-22T10:00:00Z"
    assert result.endpoints[0].provider == "linux"


def test_reenrolled_device_keeps_newest_report() -> None:
    payload = {"endpoints": [
        {"endpoint_id": "old", "serial_number": "S1", "last_seen_at": "2026-11-20T00:00:00Z", "version": "1.2.2"},
        {"endpoint_id": "other", "serial_number": "S2"},
        {"endpoint_id": "new", "serial_number": "S1", "last_seen_at": "2026-11-22T00:00:00Z", "version": "1.2.3"},
    ]}
    result = normalise("linux", payload, software=SOFT)
    assert [e.endpoint_id for e in result.endpoints] == ["new", "other"]
    assert any("old superseded by new" in w for w in result.warnings)


@pytest.mark.parametrize("provider,payload,expected", [
    ("jamf", lambda p: p["results"][1]["general"].update(reportDate="yesterday"),
     "jamf record 1: general.reportDate: expected an ISO-8601 time with a zone, found 'yesterday'"),
    ("jamf", lambda p: p["results"][0]["general"]["extensionAttributes"][1].update(values=["not-a-hash"]),
     "jamf record 0: extensionAttributes.sha256: expected a 64-hex SHA-256, found 'not-a-hash'"),
    ("jamf", lambda p: p["results"][0].update(applications={"name": "rt"}),
     "jamf record 0: applications: expected a list, found dict"),
    ("intune", lambda p: p["value"][1].update(lastSyncDateTime="2026-11-21T10:30:00"),
     "intune record 1: lastSyncDateTime: expected an ISO-8601 time with a zone"),
    ("intune", lambda p: p["value"][0]["detectedApps"][0].update(version=["1.2.3"]),
     "intune record 0: detectedApps[0].version: expected a string, found list"),
    ("fleet", lambda p: p["hosts"][0]["software"][0]["signature_information"][0].update(executable_sha256="zz"),
     "fleet record 0: software[0].signature_information[0].executable_sha256: expected a 64-hex SHA-256"),
    ("fleet", lambda p: p["hosts"][1].update(seen_time=12),
     "fleet record 1: seen_time: expected an ISO-8601 time with a zone, found 12"),
    ("linux", lambda p: p["hosts"]["web-2"]["ansible_facts"].update(packages=[]),
     "linux record 1: ansible_facts.packages: expected an object, found list"),
    ("edr", lambda p: p["resources"][0].update(last_updated="soon"),
     "edr record 0: last_updated: expected an ISO-8601 time with a zone, found 'soon'"),
])
def test_malformed_record_names_provider_index_and_field(provider: str, payload: Any, expected: str) -> None:
    source = {"jamf": payloads.jamf_page, "intune": payloads.intune_devices, "fleet": payloads.fleet_hosts,
              "linux": payloads.ansible_hostvars, "edr": payloads.edr_mixed}[provider]()
    broken = copy.deepcopy(source)
    payload(broken)
    with pytest.raises(InputError) as caught:
        normalise(provider, broken, software=SOFT)
    assert caught.value.message.startswith(expected)
    assert "\n" not in caught.value.message


def test_refusals_of_the_payload_itself() -> None:
    with pytest.raises(InputError, match="--provider: expected one of jamf, intune, fleet, linux, edr"):
        normalise("sccm", {}, software=SOFT)
    with pytest.raises(InputError, match="jamf inventory payload: expected a JSON object, found list"):
        normalise("jamf", [], software=SOFT)
    with pytest.raises(InputError, match="--software"):
        normalise("jamf", {}, software=("",))
    with pytest.raises(InputError, match="linux record 0: endpoint_id: String should have at least 1 character"):
        normalise("linux", {"schema_version": "cavra.endpoint-observations.v1", "provider": "linux",
                            "observed_at": "2026-11-22T10:00:00Z", "endpoints": [{"endpoint_id": ""}]},
                  software=SOFT)


def test_derived_targets() -> None:
    assert derived_target("macos", "arm64") == "macos-jamf-arm64-workstation"
    assert derived_target("windows", "amd64") == "windows-intune-amd64-workstation"
    assert derived_target("linux", None) is None and derived_target(None, "amd64") is None
