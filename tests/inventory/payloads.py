"""Provider payloads in their vendors' documented shapes (Jamf Pro computers-inventory, Microsoft Graph
managedDevices + detectedApps, Fleet hosts and host software, Ansible facts, Falcon and Defender)."""

from __future__ import annotations

from typing import Any

SHA_A = "a" * 64
SHA_B = "b" * 64


def jamf_page() -> dict[str, Any]:
    """``GET /api/v1/computers-inventory?section=GENERAL&section=HARDWARE&section=OPERATING_SYSTEM
    &section=APPLICATIONS``."""
    return {
        "totalCount": 3,
        "results": [
            {
                "id": "1",
                "udid": "6D8C2F4A-0001",
                "general": {
                    "name": "mac-studio-01",
                    "lastIpAddress": "10.0.0.5",
                    "platform": "Mac",
                    "reportDate": "2026-11-22T09:15:30.123Z",
                    "lastContactTime": "2026-11-22T11:02:00Z",
                    "remoteManagement": {"managed": True, "managementUsername": "jamfadmin"},
                    "site": {"id": "-1", "name": "None"},
                    "extensionAttributes": [
                        {"definitionId": "7", "name": "rt version", "enabled": True, "multiValue": False,
                         "values": ["1.2.3"], "dataType": "STRING", "inputType": "SCRIPT"},
                        {"definitionId": "8", "name": "rt SHA-256", "enabled": True, "multiValue": False,
                         "values": [SHA_A], "dataType": "STRING", "inputType": "SCRIPT"},
                    ],
                },
                "hardware": {"serialNumber": "C02AAA0001", "model": "Mac Studio", "processorArchitecture": "arm64"},
                "operatingSystem": {"name": "macOS", "version": "15.1", "build": "24B83"},
                "applications": [{"name": "Safari.app", "path": "/Applications/Safari.app", "version": "18.1",
                                  "bundleId": "com.apple.Safari", "macAppStore": False}],
            },
            {
                "id": "2",
                "udid": "6D8C2F4A-0002",
                "general": {"name": "mbp-02", "platform": "Mac", "reportDate": "2026-11-20T08:00:00Z",
                            "lastContactTime": "2026-11-22T10:00:00Z",
                            "remoteManagement": {"managed": True}, "extensionAttributes": []},
                "hardware": {"serialNumber": "C02AAA0002", "processorArchitecture": "x86_64"},
                "operatingSystem": {"name": "macOS", "version": "14.7"},
                "applications": [{"name": "rt.app", "path": "/Applications/rt.app", "version": "1.2.2 (812)",
                                  "cfBundleShortVersionString": "1.2.2", "cfBundleVersion": "812",
                                  "bundleId": "com.acme.rt"}],
            },
            {"id": "3", "udid": None, "general": {"name": "loaner", "reportDate": None, "lastContactTime": None},
             "hardware": {}, "applications": []},
        ],
    }


def intune_devices() -> dict[str, Any]:
    """``GET /deviceManagement/managedDevices?$expand=detectedApps`` (one page)."""
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices",
        "value": [
            {"id": "0f1e2d3c-0001", "userId": "u1", "deviceName": "WIN-LAPTOP-01", "managedDeviceOwnerType": "company",
             "enrolledDateTime": "2026-01-02T10:00:00Z", "lastSyncDateTime": "2026-11-22T10:30:00Z",
             "operatingSystem": "Windows", "osVersion": "10.0.22631.4460", "complianceState": "compliant",
             "managementAgent": "mdm", "serialNumber": "PF3XYZ01", "azureADDeviceId": "aad-1",
             "detectedApps": [{"id": "app-1", "displayName": "rt", "version": "1.2.3", "sizeInByte": 10,
                               "deviceCount": 0, "publisher": "Acme", "platform": "windows"},
                              {"id": "app-2", "displayName": "Microsoft Edge", "version": "131.0"}]},
            {"id": "0f1e2d3c-0002", "deviceName": "WIN-LAPTOP-02", "lastSyncDateTime": "2026-11-21T10:30:00+00:00",
             "operatingSystem": "Windows", "osVersion": "10.0.19045", "complianceState": "noncompliant",
             "processorArchitecture": "arm64", "serialNumber": "PF3XYZ02", "detectedApps": []},
        ],
        "@odata.nextLink": None,
    }


def fleet_hosts() -> dict[str, Any]:
    """``GET /api/v1/fleet/hosts?populate_software=true``."""
    return {
        "hosts": [
            {"id": 11, "uuid": "a1b2-0011", "hostname": "build-01.corp", "display_name": "build-01",
             "computer_name": "build-01", "platform": "ubuntu", "platform_like": "debian", "os_version": "Ubuntu 24.04",
             "osquery_version": "5.14.1", "cpu_type": "x86_64", "hardware_serial": "SER-11", "team_name": "Builders",
             "status": "online", "seen_time": "2026-11-22T11:59:00Z", "software_updated_at": "2026-11-22T11:00:00Z",
             "detail_updated_at": "2026-11-22T11:00:00Z",
             "software": [{"id": 900, "name": "rt", "version": "1.2.3", "source": "deb_packages",
                           "generated_cpe": "", "vulnerabilities": None, "installed_paths": ["/usr/local/bin/rt"],
                           "signature_information": [{"installed_path": "/usr/local/bin/rt", "hash_sha256": SHA_B,
                                                      "executable_sha256": SHA_A,
                                                      "executable_path": "/usr/local/bin/rt"}]},
                          {"id": 901, "name": "openssl", "version": "3.0.13", "source": "deb_packages"}]},
            {"id": 12, "uuid": "a1b2-0012", "hostname": "mac-12", "platform": "darwin", "cpu_type": "arm64e",
             "hardware_serial": "SER-12", "status": "offline", "seen_time": "2026-11-22T08:00:00Z",
             "software_updated_at": "0001-01-01T00:00:00Z",
             "software": [{"id": 7, "name": "rt.app", "source": "apps", "bundle_identifier": "com.acme.rt",
                           "installed_versions": [
                               {"version": "1.2.3", "installed_paths": ["/Applications/rt.app"],
                                "signature_information": [{"installed_path": "/Applications/rt.app",
                                                           "hash_sha256": SHA_B}]},
                               {"version": "1.3.0-rc.1", "installed_paths": ["/opt/rt.app"]}]}]},
        ]
    }


def ansible_hostvars() -> dict[str, Any]:
    """Hostvars of ``ansible all -m setup`` + ``package_facts``, keyed by inventory hostname."""
    return {
        "hosts": {
            "web-1": {"ansible_facts": {"hostname": "web-1", "architecture": "x86_64", "distribution": "RedHat",
                                        "distribution_version": "9.4", "product_serial": "VMW-1",
                                        "date_time": {"iso8601": "2026-11-22T11:30:00Z"},
                                        "packages": {"rt": [{"name": "rt", "version": "1.2.3", "release": "1.el9",
                                                             "epoch": None, "arch": "x86_64", "source": "rpm"}],
                                                     "glibc": [{"name": "glibc", "version": "2.34", "epoch": 1,
                                                                "release": "100.el9", "arch": "x86_64"}]}},
                      "cavra": {"binary_sha256": SHA_A}},
            "web-2": {"ansible_facts": {"architecture": "aarch64", "date_time": {"iso8601": "2026-11-22T11:31:00Z"},
                                        "packages": {}}},
        }
    }


def edr_mixed() -> dict[str, Any]:
    """Falcon Discover applications and a Falcon device record (``resources[]``)."""
    return {
        "meta": {"query_time": 0.01},
        "resources": [
            {"id": "app-1", "name": "rt", "vendor": "Acme", "version": "1.2.3", "last_updated": "2026-11-22T10:00:00Z",
             "host": {"id": "falcon-host-1", "hostname": "lnx-1", "platform_name": "Linux"}},
            {"id": "app-2", "name": "curl", "version": "8.5.0", "last_updated": "2026-11-22T10:00:00Z",
             "host": {"id": "falcon-host-1", "hostname": "lnx-1", "platform_name": "Linux"}},
            {"device_id": "falcon-host-2", "hostname": "win-9", "platform_name": "Windows", "os_version": "Windows 11",
             "agent_version": "7.18.18105.0", "last_seen": "2026-11-22T11:00:00Z", "serial_number": "S-9",
             "status": "normal"},
        ],
        "errors": [],
    }


def defender_hunting() -> dict[str, Any]:
    """Defender advanced hunting: DeviceTvmSoftwareInventory + DeviceFileEvents rows."""
    return {
        "Schema": [{"Name": "DeviceId", "Type": "String"}],
        "Results": [
            {"DeviceId": "mde-1", "DeviceName": "win-sec-1", "OSPlatform": "Windows11", "OSArchitecture": "x64",
             "SoftwareVendor": "acme", "SoftwareName": "rt", "SoftwareVersion": "1.2.3"},
            {"DeviceId": "mde-1", "DeviceName": "win-sec-1", "FileName": "rt.exe", "SHA256": SHA_A,
             "FolderPath": "C:\\Program Files\\rt", "Timestamp": "2026-11-22T09:00:00Z"},
        ],
    }
