"""Sample inputs for the governance part of ``ringward demo``: a CISA KEV catalog and product map,
a Fleet host inventory with drift, and a breached remediation handoff with its routing policy.

Every document is written in its real, schema-valid shape (the KEV catalog passes the vendored
CISA schema, the Fleet export is ``GET /api/v1/fleet/hosts?populate_software=true``, the handoff
is ``cavra.endpoint-remediation-handoff.v1``), so the demo runs the same import, ingestion and
report code a real user's files go through. Times are parameters: nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from ringward.core.common.jsonio import dumps_document
from ringward.core.inventory.normalise import derived_target
from ringward.core.remediation.handoff import (
    HandoffProvider,
    RemediationHandoff,
    RemediationHandoffStatus,
    handoff_id_for,
    record_status,
)
from ringward.operations.common.files import atomic_write

#: the demo's exploited vulnerability: in KEV for Golang x/sys, which the sample release depends on
#: (``dependencies.json``: golang.org/x/sys v0.38.0)
DEMO_CVE: Final = "CVE-2026-40001"
DEMO_COMPONENT: Final = "pkg:golang/golang.org/x/sys@v0.38.0"
#: how many endpoints each workstation target has in the demo fleet (every other target has one)
WORKSTATION_HOSTS: Final = 3
#: routing policy owners: the first rung notifies the owner, the second release governance
SLA_OWNER: Final = "endpoint-ops"
SLA_OWNER_MEMBER: Final = "alice"
SLA_GOVERNANCE: Final = "release-governance"
SLA_ROUTE: Final = "drift-remediation"


def _zulu(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, dumps_document(document), overwrite=False)
    return path


# --- KEV -----------------------------------------------------------------------------------------------


def kev_catalog(released: datetime) -> dict[str, Any]:
    """A one-entry CISA KEV catalog (``known_exploited_vulnerabilities.json`` shape) released at
    ``released``; ``catalogVersion`` is the release date, as CISA publishes it."""
    entry = {
        "cveID": DEMO_CVE,
        "vendorProject": "Golang",
        "product": "x/sys",
        "vulnerabilityName": "Golang x/sys Out-of-Bounds Write Vulnerability",
        "dateAdded": (released - timedelta(days=1)).date().isoformat(),
        "shortDescription": "Golang x/sys contains an out-of-bounds write in a syscall wrapper (demo entry).",
        "requiredAction": "Apply mitigations per vendor instructions or discontinue use of the product if "
                          "mitigations are unavailable.",
        "dueDate": (released + timedelta(days=20)).date().isoformat(),
        "knownRansomwareCampaignUse": "Unknown",
        "notes": "https://pkg.go.dev/vuln/ (demo entry written by `ringward demo`)",
        "cwes": ["CWE-787"],
    }
    return {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": released.strftime("%Y.%m.%d"),
        "dateReleased": released.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "count": 1,
        "vulnerabilities": [entry],
    }


def kev_product_map() -> dict[str, Any]:
    """``ringward.kev-product-map.v1``: KEV's Golang / x/sys is the Go module golang.org/x/sys before v0.39.0."""
    return {"schema_version": "ringward.kev-product-map.v1", "products": [
        {"vendorProject": "Golang", "product": "x/sys", "purl": "pkg:golang/golang.org/x/sys",
         "affected": "<v0.39.0"}]}


# --- fleet inventory -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetDrift:
    """Which host of the export deviates from the release, and how."""

    behind: str  # runs the previous release
    checksum: str  # runs a binary whose SHA-256 the release does not have
    stale: str  # last seen days ago

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.behind, self.checksum, self.stale)


_FLEET_PLATFORM: Final = {"darwin": "darwin", "windows": "windows", "linux": "ubuntu"}
_FLEET_CPU: Final = {"amd64": "x86_64", "arm64": "arm64"}


def _targets(package_dir: Path, runtime: str) -> list[dict[str, Any]]:
    manifest = json.loads((package_dir / f"{runtime}.endpoint-deployment.json").read_bytes())
    return list(manifest["deployment_targets"])


def fleet_hosts_export(package_dir: Path, previous_dir: Path, *, runtime: str, version: str, previous: str,
                       now: datetime) -> tuple[dict[str, Any], FleetDrift]:
    """A Fleet ``hosts?populate_software=true`` export of the fleet the release's signed endpoint
    deployment manifest describes: ``WORKSTATION_HOSTS`` hosts per workstation target, one per other
    target (CI runners and managed endpoints name their target, as an osquery label would; a Fleet host
    cannot be derived to it). Every host runs ``version`` with the manifest's binary, except three:
    one still on ``previous`` (its binary from ``previous_dir``), one whose binary the release does
    not contain, and one not seen for three days."""
    earlier = {t["id"]: t["binary_sha256"] for t in _targets(previous_dir, runtime)}
    hosts: list[dict[str, Any]] = []
    for target in _targets(package_dir, runtime):
        os_name, arch = target["os"], target["arch"]
        family = "macos" if os_name == "darwin" else os_name
        derived = derived_target(family, arch) == target["id"]
        for n in range(1, (WORKSTATION_HOSTS if derived else 1) + 1):
            name = f"{target['id'].removesuffix('-workstation')}-{n:02d}"
            serial = "SER-" + hashlib.sha256(name.encode()).hexdigest()[:10].upper()
            host: dict[str, Any] = {
                "id": len(hosts) + 1, "uuid": f"{serial[4:8]}-{len(hosts) + 1:04d}", "hostname": f"{name}.corp.example",
                "computer_name": name, "platform": _FLEET_PLATFORM[os_name], "cpu_type": _FLEET_CPU[arch],
                "hardware_serial": serial, "status": "online", "osquery_version": "5.14.1",
                "seen_time": _zulu(now - timedelta(minutes=5 + len(hosts))),
                "software_updated_at": _zulu(now - timedelta(minutes=50 + len(hosts))),
                "software": [{"id": 900 + len(hosts), "name": runtime, "version": version, "source": "programs",
                              "installed_paths": [target["install_path"]],
                              "signature_information": [{"installed_path": target["install_path"],
                                                         "executable_sha256": target["binary_sha256"],
                                                         "executable_path": target["install_path"]}]}],
            }
            if not derived:
                host["deployment_target"] = target["id"]
            hosts.append(host)
    # the deviations go to the first Apple silicon workstations (Jamf's surface, as in the issue)
    macs = [h for h in hosts if h["computer_name"].startswith("macos-jamf-arm64")]
    drift = FleetDrift(behind=macs[0]["uuid"], checksum=macs[1]["uuid"], stale=macs[2]["uuid"])
    behind, mismatched, stale = macs[0], macs[1], macs[2]
    behind_target = next(t for t in _targets(package_dir, runtime) if t["id"] == "macos-jamf-arm64-workstation")
    behind["software"][0]["version"] = previous
    behind["software"][0]["signature_information"][0]["executable_sha256"] = earlier[behind_target["id"]]
    mismatched["software"][0]["signature_information"][0]["executable_sha256"] = hashlib.sha256(
        b"a locally rebuilt binary the release never shipped").hexdigest()
    stale.update(status="offline", seen_time=_zulu(now - timedelta(days=3)),
                 software_updated_at=_zulu(now - timedelta(days=3, hours=1)))
    return {"hosts": hosts}, drift


# --- remediation SLA ------------------------------------------------------------------------------------


def remediation_handoff(*, reconciliation_id: str, release: str, channel: str, breach_at: datetime,
                        action_count: int, queue: str) -> tuple[RemediationHandoff, RemediationHandoffStatus]:
    """The remediation handoff for a drift reconciliation, handed to the in-house queue 48 h before
    ``breach_at`` (so, with the default 48 h critical threshold, it breaches exactly then), and its
    ``in_progress`` status 8 h later: work started, never finished."""
    request_id = "err_" + hashlib.sha256(f"demo-remediation:{reconciliation_id}".encode()).hexdigest()[:12]
    request_sha = hashlib.sha256(request_id.encode()).hexdigest()
    created = breach_at - timedelta(hours=48)
    handoff = RemediationHandoff(
        handoff_id=handoff_id_for(request_id, [queue], request_sha), request_id=request_id,
        reconciliation_id=reconciliation_id, created_at=created, requested_by="release-manager",
        delivery_mode="private_queue", providers=(HandoffProvider(queue),),
        provider_count=1, action_count=action_count, approval_id=None, approval_state="approved",
        approval_required=False, release=release, channel=channel, strategy="reinstall-signed-package",
        alert_level="critical", request_sha256=request_sha,
    )
    started = record_status(handoff, [], provider=queue, status="in_progress", recorded_at=created + timedelta(hours=8),
                            recorded_by=SLA_OWNER_MEMBER, notes="reinstalling the signed package on the drifted hosts")
    return handoff, started


def sla_routing_policy(receiver: str) -> dict[str, Any]:
    """Routing and escalation (``routing.yaml``): critical remediation work goes to ``receiver``
    owned by endpoint-ops; its ladder pages endpoint-ops at once and release governance after 60
    minutes without an acknowledgement, both through ``receiver`` (the demo's in-house queue)."""
    return {
        "group_wait": "0s",
        "owners": {
            SLA_OWNER: {"members": [SLA_OWNER_MEMBER], "receivers": [receiver]},
            SLA_GOVERNANCE: {"members": ["grace"], "receivers": [receiver]},
        },
        "admins": ["root"],
        "rules": [{"rule_id": SLA_ROUTE, "alert_levels": ["critical"], "providers": [receiver], "owner": SLA_OWNER,
                   "escalation_policy": "owner-then-governance"}],
        "escalation_policies": {"owner-then-governance": {
            "rungs": [{"level": "owner", "after": "0m", "targets": [{"owner": SLA_OWNER}]},
                      {"level": "governance", "after": "60m", "targets": [{"owner": SLA_GOVERNANCE}]}],
            "repeat": 0, "repeat_after": "60m"}},
    }
