"""Ingestion -> reconciliation -> remediation request without a person in between (reference §4.19, §8.5).

What the ``inventory-automation-on-ingest`` deployment runs when ``ringward.inventory.ingested``
arrives, what ``ringward inventory ingest --reconcile`` runs in-process, and what the webhook receiver
runs after an in-process ingestion when no Prefect API is configured -- one operation,
:func:`automate_reconciliation`:

1. the ingestion is looked up by its id (the event carries ids only): its observations file is the
   one in its evidence bundle, re-hashed against the recorded digest; its channel is the recorded
   one (an event naming another channel is refused);
2. the channel's **current release** comes from the promotion domain's channel state (the release
   the last endpoint export put on the channel, with its ``checksums.txt`` digest), located as a
   package directory under ``$RINGWARD_PACKAGES`` (``<home>/packages``) by that digest, or at the
   path ``channel-releases.yaml`` names for the channel (which must then hold exactly that
   release). A channel no export ever reached takes the configured package as its release; a
   channel with neither is skipped (nothing to reconcile against);
3. the package is verified against the pinned trust root (always -- the reference skipped it by
   default here) and the observations are reconciled (:mod:`ringward.operations.inventory.reconcile`);
4. on drift a remediation request is opened -- or, while an open request covers the same release,
   targets and drift classes, the run attaches to it (recorded there) instead of opening another
   approval (:func:`ringward.operations.remediation.remediation_ops.request_remediation`); the
   request is signed with the automation's **remediation**-role key;
5. a ``cavra.endpoint-reconciliation-automation.v1`` record ties ingestion, reconciliation, request
   and approval together. It is kept per (ingestion, release digest): the same ingestion announced
   again is answered from that record (``repeat``), nothing is reconciled or attached twice.

Configuration (files, so a deployment can ``need`` them and stay off until they exist):

- ``$RINGWARD_REMEDIATION_KEY`` or ``<RINGWARD_HOME>/remediation-key.pem``: the Ed25519 PEM of a
  remediation-role key pinned in the trust root (``ringward keys generate`` + ``ringward trust
  add-key --role remediation``); mode 0600, readable by the worker only;
- ``$RINGWARD_TRUST_ROOT`` or ``<RINGWARD_HOME>/trust-root.json``;
- optional ``$RINGWARD_CHANNEL_RELEASES`` or ``<RINGWARD_HOME>/channel-releases.yaml``::

      schema_version: ringward.channel-releases.v1
      channels:
        stable: /srv/ringward/packages/rt-1.2.3     # relative paths are relative to this file
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from ringward.core.evidence.records import EvidenceRecord
    from ringward.store import Store

REMEDIATION_KEY_ENV = "RINGWARD_REMEDIATION_KEY"
REMEDIATION_KEY_FILE = "remediation-key.pem"
CHANNEL_RELEASES_ENV = "RINGWARD_CHANNEL_RELEASES"
CHANNEL_RELEASES_FILE = "channel-releases.yaml"
CHANNEL_RELEASES_SCHEMA = "ringward.channel-releases.v1"
AUTOMATION_SCHEMA = "cavra.endpoint-reconciliation-automation.v1"
AUTOMATION_FILE = "endpoint-reconciliation-automation.json"
AUTOMATION_MD = "endpoint-reconciliation-automation.md"
KIND_AUTOMATION = "endpoint-reconciliation-automation"
RESULT_SCHEMA = "ringward.inventory-automation-result.v1"
#: kv namespace: one row per (ingestion, release digest) the automation decided on
AUTOMATIONS = "remediation.automations"
AUTOMATION_CONTROLS = (
    "inventory-ingestion-reconciled-against-signed-manifest",
    "drift-opens-approval-bound-remediation-request",
    "automation-records-governance-evidence-only",
    "private-connectors-required-for-endpoint-mutation",
    "package-verification-never-skipped",
    "open-remediation-request-deduplicated-by-release-target-drift-class",
)
_INVENTORY_ID = re.compile(r"^eii_[0-9a-f]{12}$")
MAX_CONFIG_BYTES = 1024 * 1024

Status = Literal["requested", "attached", "aligned", "skipped", "already-executed"]


# --- settings ------------------------------------------------------------------------------------------


def _from_env_or_home(variable: str, file_name: str) -> Path:
    from ringward.settings import ringward_home

    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser().absolute() if value else ringward_home().absolute() / file_name


def remediation_key_path() -> Path:
    """The automation's remediation-role signing key: ``$RINGWARD_REMEDIATION_KEY`` or
    ``<RINGWARD_HOME>/remediation-key.pem`` (it may not exist yet)."""
    return _from_env_or_home(REMEDIATION_KEY_ENV, REMEDIATION_KEY_FILE)


def channel_releases_path() -> Path:
    """``$RINGWARD_CHANNEL_RELEASES`` or ``<RINGWARD_HOME>/channel-releases.yaml`` (optional)."""
    return _from_env_or_home(CHANNEL_RELEASES_ENV, CHANNEL_RELEASES_FILE)


def automation_root() -> Path:
    """Where unattended runs write their reports, requests and automation records: ``<home>/automation``."""
    from ringward.settings import ringward_home

    return ringward_home().absolute() / "automation"


def automation_configured() -> bool:
    """The trust root and the remediation key exist here (the deployment's ``needs``)."""
    from ringward.settings import trust_root_path

    return trust_root_path().is_file() and remediation_key_path().is_file()


class ChannelReleasesConfig(BaseModel):
    """``channel-releases.yaml``: the package directory of each channel's release (its only format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.channel-releases.v1"] = "ringward.channel-releases.v1"
    channels: dict[str, str] = Field(default_factory=dict, max_length=1000)


def load_channel_releases(path: Path | None = None) -> dict[str, Path]:
    """Channel -> package directory from ``path`` (default :func:`channel_releases_path`); an absent
    default file configures nothing.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown field or an invalid channel name.
    """
    import yaml

    from ringward.core.errors import ConfigError, InputError
    from ringward.core.promotion.channels import check_channel_name
    from ringward.operations.common.files import read_capped

    target = path or channel_releases_path()
    if path is None and not target.exists():
        return {}
    try:
        data = read_capped(target, MAX_CONFIG_BYTES, source=str(target))
        document = yaml.safe_load(data.decode("utf-8")) if data.strip() else {}
    except (InputError, UnicodeDecodeError, yaml.YAMLError) as exc:
        message = exc.message if isinstance(exc, InputError) else str(exc).splitlines()[0]
        raise ConfigError(f"{target}: cannot read the channel releases ({message})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{target}: expected a mapping at the top level, found {type(document).__name__}")
    try:
        config = ChannelReleasesConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{target}: {where}: {first['msg']}") from None
    out: dict[str, Path] = {}
    for channel, folder in config.channels.items():
        try:
            check_channel_name(channel, option=f"{target}: channels")
        except InputError as exc:
            raise ConfigError(exc.message) from None
        resolved = Path(folder).expanduser()
        out[channel] = resolved if resolved.is_absolute() else target.parent.absolute() / resolved
    return out


# --- the channel's current release ---------------------------------------------------------------------


@dataclass(frozen=True)
class CurrentRelease:
    channel: str
    package_dir: Path
    #: ``channel-state`` (the promotion domain's record) or ``configured`` (channel-releases.yaml only)
    source: str
    version: str | None
    digest: str

    def document(self) -> dict[str, Any]:
        return {"channel": self.channel, "package_dir": str(self.package_dir), "source": self.source,
                "version": self.version, "digest": self.digest}


def checksums_digest(package_dir: Path) -> str:
    """``sha256:<hex>`` of a package's ``checksums.txt`` (how channel state names a release).

    Raises:
        InputError: the package has no readable ``checksums.txt``.
    """
    from ringward.operations.common.files import read_capped

    path = package_dir / "checksums.txt"
    return "sha256:" + hashlib.sha256(read_capped(path, 4 * 1024 * 1024, source=str(path))).hexdigest()


def current_release(store: Store, channel: str, *, packages: Path | None, configured: Mapping[str, Path],
                    config_path: Path | None = None) -> CurrentRelease | None:
    """The release ``channel`` is at (see the module docstring), or None when nothing names one.

    Raises:
        NotFoundError: the channel has a release but no package with its digest can be found.
        BindingMismatchError: channel-releases.yaml names another release than the channel is at.
        ConfigError: channel-releases.yaml names a directory that is no package.
    """
    from ringward.core.errors import BindingMismatchError, ConfigError, InputError, NotFoundError
    from ringward.operations.advisories.kev_ops import index_packages
    from ringward.operations.promotion.channel_ops import channels

    state = channels(store).get(channel)
    named = configured.get(channel)
    where = f"{config_path or channel_releases_path()}: channels.{channel}"
    named_digest = None
    if named is not None:
        try:
            named_digest = checksums_digest(named)
        except InputError as exc:
            raise ConfigError(f"{where}: {named} is not a release package ({exc.message})") from None
    if state.current is not None:
        version, digest = state.current.version, state.current.digest
        if named is not None:
            if named_digest != digest:
                raise BindingMismatchError(
                    f"{where}: package {named} has checksums digest {named_digest}, expected {digest} (release "
                    f"{version}, the channel's current release)")
            return CurrentRelease(channel, named, "channel-state", version, digest)
        if packages is not None and packages.is_dir():
            located = index_packages(packages).get(digest)
            if located is not None:
                return CurrentRelease(channel, located, "channel-state", version, digest)
        raise NotFoundError(
            f"channel {channel}: current release {version} ({digest}) has no package under "
            f"{packages or '$RINGWARD_PACKAGES'}; keep released packages there or name it in {channel_releases_path()}")
    if named is not None and named_digest is not None:
        return CurrentRelease(channel, named, "configured", None, named_digest)
    return None


# --- the ingestion -------------------------------------------------------------------------------------


def ingestion_observations(store: Store, inventory_id: str) -> tuple[EvidenceRecord, Path]:
    """The ingestion's evidence record and its observations file (re-hashed against the record).

    Raises:
        InputError: not an ingestion id.
        NotFoundError: no such ingestion in this store.
        EvidenceIntegrityError: the bundle's observations file is gone or changed.
    """
    from ringward.core.errors import EvidenceIntegrityError, InputError, NotFoundError
    from ringward.core.inventory.observations import OBSERVATIONS_FILE
    from ringward.operations.common.files import sha256_file
    from ringward.operations.evidence.evidence_ops import resolve_bundle_dir
    from ringward.settings import evidence_root
    from ringward.store.inventory.repo import InventoryRepository

    if not isinstance(inventory_id, str) or not _INVENTORY_ID.fullmatch(inventory_id):
        raise InputError(f"inventory_id: expected eii_<12 hex>, found {str(inventory_id)[:80]!r}")
    record_id = InventoryRepository(store).ingestion_record_id(inventory_id)
    if record_id is None:
        raise NotFoundError(f"ingestion {inventory_id}: not recorded in this store")
    record = store.get_evidence(record_id)
    if not record.bundle_dir:
        raise EvidenceIntegrityError(f"ingestion {inventory_id}: evidence record {record.id} has no bundle")
    try:
        bundle = resolve_bundle_dir(evidence_root(), record.bundle_dir)
        path = bundle / OBSERVATIONS_FILE
        digest = sha256_file(path)
    except OSError as exc:
        raise EvidenceIntegrityError(f"ingestion {inventory_id}: {OBSERVATIONS_FILE} in bundle {record.bundle_dir} "
                                     f"cannot be read ({type(exc).__name__})") from None
    except RuntimeError as exc:  # pragma: no cover - resolve_bundle_dir raises RingwardErrors
        raise EvidenceIntegrityError(str(exc)) from None
    expected = record.payload.get("normalised_sha256")
    if digest != expected:
        raise EvidenceIntegrityError(f"ingestion {inventory_id}: {path} has sha256 {digest}, expected {expected} "
                                     "(the recorded observations)")
    return record, path


# --- the automation ------------------------------------------------------------------------------------


def automation_id_for(release: Mapping[str, Any], inventory_id: str, reconciliation_id: str,
                      request_id: str | None) -> str:
    """``era_`` + sha256(json{version, commit, inventory_id, reconciliation_id, request_id})[:12] (§8.5)."""
    body = {"version": release.get("version"), "commit": release.get("commit"), "inventory_id": inventory_id,
            "reconciliation_id": reconciliation_id, "request_id": request_id}
    return "era_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def render_markdown(doc: Mapping[str, Any]) -> bytes:
    lines = [
        f"# Endpoint reconciliation automation {doc['automation_id']}",
        "",
        f"- ingestion {doc['inventory_id']} ({doc['provider']}), channel {doc['channel']}, "
        f"observed {doc['observed_at']}",
        f"- release {doc['release'].get('version')} ({doc['release_source']}, {doc['release_digest']})",
        f"- reconciliation {doc['reconciliation_id']}: {doc['drift_status']} ({doc['alert_level']})",
        f"- remediation request: {doc['remediation_request_id'] or '-'}"
        + (" (attached to the open request)" if doc["attached"] else "")
        + (f"; approval {doc['approval_id']} ({doc['approval_state']})" if doc["approval_id"] else ""),
        f"- outcome: {doc['outcome']}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _skipped(inventory_id: str, channel: str | None, reason: str) -> dict[str, Any]:
    return {"schema_version": RESULT_SCHEMA, "status": "skipped", "inventory_id": inventory_id, "channel": channel,
            "reason": reason, "repeat": False, "message": f"not reconciled: {reason}"}


def automate_reconciliation(
    store: Store,
    *,
    inventory_id: str,
    now: datetime,
    trust_root: Path,
    signing_key: Path,
    channel: str | None = None,
    packages: Path | None = None,
    channel_releases: Path | None = None,
    strategy: str = "mixed",
    stale_after: timedelta | None = None,
    expires_in: timedelta = timedelta(hours=24),
    actor: str | None = None,
    output_root: Path | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Reconcile an ingestion against its channel's current release and open (or attach to) a
    remediation request on drift (see the module docstring).

    Raises:
        InputError / ConfigError: bad options, key, trust root or configuration (exit 2).
        NotFoundError, MetadataMismatchError, BindingMismatchError, EvidenceIntegrityError: the
            ingestion or the channel's release cannot be used (recorded, exit 1).
        VerificationError: the package does not verify (recorded by the reconciliation, exit 1).
        SignatureError: the key is not a pinned remediation-role key (recorded, exit 1).
    """
    from ringward.core.errors import (
        ConfigError,
        ExecutionReplayError,
        InputError,
        MetadataMismatchError,
        RingwardError,
        StoreConflictError,
    )
    from ringward.core.evidence.records import EvidenceSubject
    from ringward.core.inventory.reconcile import DEFAULT_STALE_AFTER
    from ringward.core.promotion.channels import check_actor
    from ringward.core.remediation import request as rq
    from ringward.operations.inventory.common import evidence_ref, write_bundle, write_output_dir
    from ringward.operations.inventory.reconcile import reconcile_inventory
    from ringward.operations.promotion.automation import automation_actor
    from ringward.operations.promotion.channel_ops import record_refusal
    from ringward.operations.remediation.remediation_ops import request_remediation, state

    who = automation_actor(actor)
    check_actor(who)
    chosen = rq.parse_strategy(strategy)
    if not signing_key.is_file():
        raise ConfigError(f"--signing-key {signing_key}: no remediation key there (expected an Ed25519 PEM of a "
                          f"pinned remediation-role key; set {REMEDIATION_KEY_ENV} or put {REMEDIATION_KEY_FILE} in "
                          "RINGWARD_HOME)")
    if not trust_root.is_file():
        raise ConfigError(f"--trust-root {trust_root}: not a file (set RINGWARD_TRUST_ROOT or put trust-root.json "
                          "in RINGWARD_HOME)")
    configured = load_channel_releases(channel_releases)
    window = stale_after or DEFAULT_STALE_AFTER
    subject = EvidenceSubject(channel=channel)
    context: dict[str, Any] = {"inventory_id": inventory_id, "event_channel": channel}
    try:
        record, observations = ingestion_observations(store, inventory_id)
        recorded_channel = record.payload.get("channel")
        provider = record.payload.get("provider")
        subject = EvidenceSubject(channel=recorded_channel, provider=provider)
        if channel is not None and channel != recorded_channel:
            raise MetadataMismatchError(f"channel: the event names {channel!r}, ingestion {inventory_id} was recorded "
                                        f"for {recorded_channel!r}")
        if recorded_channel is None:
            return _skipped(inventory_id, None, f"ingestion {inventory_id} names no channel (ingest with --channel "
                                                "or configure the source's channel)")
        release = current_release(store, recorded_channel, packages=packages, configured=configured,
                                  config_path=channel_releases)
        if release is None:
            return _skipped(inventory_id, recorded_channel,
                            f"channel {recorded_channel} has no promoted release and none is configured in "
                            f"{channel_releases or channel_releases_path()}")
        context["release"] = release.document()
        subject = subject.model_copy(update={"release_version": release.version})
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            record_refusal(store, KIND_AUTOMATION, exc, actor=who, now=now, subject=subject, payload=context,
                           flow_run_id=flow_run_id)
        raise
    repo = state(store)
    key = f"{inventory_id}/{release.digest}"
    earlier = repo.get(AUTOMATIONS, key)
    if earlier is not None:
        return {**earlier.value["result"], "repeat": True,
                "message": f"ingestion {inventory_id} was already automated against {release.digest} "
                           f"({earlier.value['result']['automation_id']})"}
    root = output_root or automation_root()
    run = f"{inventory_id}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    reconciled = reconcile_inventory(store, package_dir=release.package_dir, observations=observations,
                                     trust_root=trust_root, now=now, actor=who, stale_after=window,
                                     output=root / "endpoint-reconciliation" / run, flow_run_id=flow_run_id)
    requested: dict[str, Any] | None = None
    outcome: Status = "aligned"
    replay: str | None = None
    if reconciled["drift_status"] == "drift_detected":
        try:
            requested = request_remediation(
                store, reconciliation=Path(reconciled["report"]), strategy=chosen.value, requester=who,
                signing_key=signing_key, trust_root=trust_root, now=now, expires_in=expires_in,
                output_root=root / "endpoint-remediation", flow_run_id=flow_run_id)
            outcome = "attached" if requested["attached"] else "requested"
        except ExecutionReplayError as exc:  # this very drift was remediated already (recorded there)
            outcome, replay = "already-executed", exc.message
    request_id = None if requested is None else str(requested["request_id"])
    approval_id = None if requested is None else str(requested["approval_id"])
    approval_state = None
    if approval_id is not None:
        approval_state = store.approvals.get(approval_id).effective_state(now).value
    automation_id = automation_id_for(reconciled["release"], inventory_id, reconciled["reconciliation_id"],
                                      request_id)
    summary = {k: v for k, v in reconciled["summary"].items() if k != "targets"}
    refs = [f"endpoint-inventory-ingestion://{inventory_id}",
            f"endpoint-reconciliation://{reconciled['reconciliation_id']}"]
    if request_id:
        refs += [f"endpoint-remediation-request://{request_id}", f"approval://{approval_id}"]
    doc: dict[str, Any] = {
        "schema_version": AUTOMATION_SCHEMA,
        "automation_id": automation_id,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "requested_by": who,
        "reconciliation_id": reconciled["reconciliation_id"],
        "drift_status": reconciled["drift_status"],
        "alert_level": reconciled["alert_level"],
        "release": reconciled["release"],
        "release_source": release.source,
        "release_digest": release.digest,
        "channel": release.channel,
        "inventory_id": inventory_id,
        "provider": provider,
        "observed_at": reconciled["observed_at"],
        "remediation_request_id": request_id,
        "approval_id": approval_id,
        "approval_state": approval_state,
        "attached": bool(requested and requested["attached"]),
        "strategy": chosen.value,
        "outcome": outcome,
        "summary": summary,
        "controls": list(AUTOMATION_CONTROLS),
        "evidence_refs": refs,
        "reconciliation_report": reconciled["report"],
        "remediation_request": None if requested is None else requested.get("request") or requested.get("output_dir"),
    }
    if replay:
        doc["note"] = replay
    pending = approval_state == "pending"
    payload = {
        "schema_version": "cavra.evidence.metadata.v1", "metadata_kind": KIND_AUTOMATION,
        "session_id": automation_id, "signer": who, "decision_count": 1 if request_id else 0,
        "blocked_count": summary.get("drifted_endpoint_count", 0) + summary.get("missing_target_count", 0),
        "approval_required_count": 1 if pending else 0, **{k: v for k, v in doc.items() if k != "schema_version"},
        "automation": {"schema_version": AUTOMATION_SCHEMA, "automation_id": automation_id},
    }
    files = {AUTOMATION_FILE: json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n",
             AUTOMATION_MD: render_markdown(doc)}
    draft, bundle = write_bundle(
        KIND_AUTOMATION, actor=who, payload=payload, files=files, flow_run_id=flow_run_id, now=now,
        subject=subject.model_copy(update={"status": outcome, "approval_id": approval_id,
                                           "approval_state": approval_state,
                                           "success": reconciled["drift_status"] == "aligned"}))
    target_dir = root / "endpoint-reconciliation-automation" / automation_id
    result: dict[str, Any] = {
        "schema_version": RESULT_SCHEMA, "status": outcome, "automation_id": automation_id,
        "inventory_id": inventory_id, "channel": release.channel, "provider": provider,
        "release": {**reconciled["release"], "source": release.source, "digest": release.digest,
                    "package_dir": str(release.package_dir)},
        "reconciliation_id": reconciled["reconciliation_id"], "drift_status": reconciled["drift_status"],
        "alert_level": reconciled["alert_level"], "summary": summary, "report": reconciled["report"],
        "request_id": request_id, "approval_id": approval_id, "approval_state": approval_state,
        "attached": doc["attached"], "request": doc["remediation_request"], "output_dir": str(target_dir),
        "repeat": False, "message": _message(outcome, doc, replay),
    }
    import shutil

    try:
        (record_out,) = repo.decide([(AUTOMATIONS, key, {"automation_id": automation_id, "result": result}, 0)],
                                    [draft], actor=who, now=now)
    except StoreConflictError:  # a concurrent run of the same ingestion recorded first
        shutil.rmtree(bundle, ignore_errors=True)
        winner = repo.get(AUTOMATIONS, key)
        if winner is None:  # pragma: no cover - the conflict means it exists
            raise
        return {**winner.value["result"], "repeat": True}
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    write_output_dir(target_dir, files, identical=AUTOMATION_FILE)
    return {**result, "evidence": evidence_ref(record_out)}


def _message(outcome: Status, doc: Mapping[str, Any], replay: str | None) -> str:
    release = doc["release"].get("version")
    if outcome == "aligned":
        return f"aligned: channel {doc['channel']} matches release {release}"
    if outcome == "already-executed":
        return f"drift {doc['reconciliation_id']}: {replay}"
    verb = "attached to open request" if outcome == "attached" else "opened remediation request"
    return (f"drift on {doc['channel']} ({doc['alert_level']}): {verb} {doc['remediation_request_id']} "
            f"(approval {doc['approval_id']} {doc['approval_state']})")


def automate_if_configured(store: Store, inventory_id: str, *, now: datetime,
                           flow_run_id: str | None = None) -> dict[str, Any] | None:
    """:func:`automate_reconciliation` with everything from this process's settings, or None when
    the trust root or the remediation key is not configured (the deployment's ``needs``)."""
    from ringward.settings import packages_path, trust_root_path

    if not automation_configured():
        return None
    return automate_reconciliation(store, inventory_id=inventory_id, now=now, trust_root=trust_root_path(),
                                   signing_key=remediation_key_path(), packages=packages_path(),
                                   flow_run_id=flow_run_id)


__all__ = ["AUTOMATIONS", "KIND_AUTOMATION", "REMEDIATION_KEY_ENV", "automate_if_configured",
           "automate_reconciliation", "automation_configured", "current_release", "ingestion_observations",
           "load_channel_releases", "remediation_key_path"]
