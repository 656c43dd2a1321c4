"""Key compromise: revoke the key in the trust root -> list everything signed by it -> re-verify it
against the new trust root -> hold the affected channels -> notify -> record a supply-chain incident.

- ``revoke-key`` (destructive): trust root version N+1 with the key ``revoked`` (its signatures never
  count again; a revoked key can never be re-added), signed by the **root** role -- a threshold of
  version N's root keys and of N+1's own (``--root-key``, each a root-role private key) -- verified as
  a rotation step (:func:`ringward.core.trust.rotation.verify_rotation`) before the approval is
  consumed, then written over the trust root file by the rotation code (``trust update``: chain
  verified again, atomic replace under a lock) and recorded as a ``trust-root-rotation`` record. A
  legacy (unsigned) trust root is refused: revoke by hand with ``ringward trust revoke-key``.
- ``list-affected``: by key id, from the evidence chain and the remediation state: packages (a
  verification whose signers include the key; a packaging record whose package still carries a
  signature by it), channel promotion requests, rollout promotion and rollback requests, and
  remediation requests signed by it.
- ``re-verify``: each of them against the trust root now on disk: packages with the release verify
  operation, signed requests with the signed-payload rules. What fails (or cannot be read any more)
  is affected; the channels it reaches (a promotion request's channel, a channel whose current
  release or high-water mark is an affected package, a remediation request's channel) are held.
- ``hold-channels`` (destructive): the promotion domain's hold on each of those channels.
- ``notify``: one event through the connector platform (``--connectors`` / ``RINGWARD_CONNECTORS``;
  without a config the step is recorded ``skipped``); a failed delivery fails the step and the next
  run retries it (the delivery ledger keeps sends single per event id).
- ``incident``: a critical ``supply-chain`` incident (dedup key ``playbook:<run id>``) linking the
  affected package digests and channels, with a note naming the run and the affected requests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ringward.core.errors import InputError, RingwardError, StateError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.incidents import playbooks as pb
from ringward.core.incidents.playbooks import PlaybookKind, PlaybookRun, StepStatus
from ringward.core.trust.root import KeyStatus, Role, TrustedKey, TrustRoot
from ringward.operations.incidents import playbook_common as common
from ringward.operations.incidents.playbook_runs import Context, Handler, StepResult, run_dir

KIND: Final = PlaybookKind.KEY_COMPROMISE
EVENT_SOURCE: Final = "ringward_playbook"


# --- inputs ----------------------------------------------------------------------------------------------


def resolve_key(root: TrustRoot, selector: str) -> TrustedKey:
    """The key whose label, key id or key-id prefix (>= 8 hex) is ``selector`` (the rule of
    ``trust revoke-key``).

    Raises:
        InputError: no such key, or the prefix is ambiguous.
    """
    text = selector.strip()
    matches = [k for k in root.keys if text in (k.label, k.key_id) or (len(text) >= 8 and k.key_id.startswith(text))]
    if not matches:
        raise InputError(f"--key {selector!r}: no key with that label, key id or key-id prefix in the trust root")
    if len(matches) > 1:
        raise InputError(f"--key {selector!r}: ambiguous, matches {len(matches)} keys; give more of the key id")
    return matches[0]


def inputs(*, trust_root: Path, key: str) -> dict[str, Any]:
    """The run's identifying inputs (PB1): the trust root file and the full key id.

    Raises:
        InputError: unreadable trust root, unknown key, or a legacy trust root with no root role.
    """
    from ringward.core.trust.rotation import is_chained

    path = trust_root.absolute()
    root = common.load_root(path)
    target = resolve_key(root, key)
    if not is_chained(root):
        raise InputError(f"--trust-root {path}: v{root.version} pins no root-role key, so a revocation cannot be a "
                         "signed trust-root version; upgrade it (trust add-key --key root=KEY, trust sign-root) or "
                         "revoke by hand with `ringward trust revoke-key`")
    return {"trust_root": str(path), "key_id": target.key_id}


def _reason(ctx: Context, run: PlaybookRun) -> str:
    return str(ctx.options.get("reason") or f"key compromise (playbook {run.run_id})")[:1000]


def _key(run: PlaybookRun, root: TrustRoot) -> TrustedKey:
    key = root.find(run.inputs["key_id"])
    if key is None:
        raise StateError(f"key {run.inputs['key_id'][:16]}: no longer in the trust root {run.inputs['trust_root']}")
    return key


# --- revoke-key ------------------------------------------------------------------------------------------


def _threshold_warnings(root: TrustRoot) -> list[str]:
    problems = []
    for role, threshold in root.thresholds.items():
        active = [k for k in root.keys_for(role) if k.status is KeyStatus.ACTIVE]
        if root.keys_for(role) and threshold > len(active):
            problems.append(f"threshold {role.value}={threshold} but only {len(active)} active {role.value} key(s) "
                            "remain; nothing of that role verifies until a new key is added")
    return problems


def revoke_plan(ctx: Context, run: PlaybookRun) -> dict[str, Any] | StepResult:
    from ringward.core.trust.rotation import root_body_sha256
    from ringward.operations.trust.keys import change_key_status

    path = Path(run.inputs["trust_root"])
    root = common.load_root(path)
    key = _key(run, root)
    if key.status is KeyStatus.REVOKED:
        return StepResult(StepStatus.DONE, {
            "already_revoked": True, "trust_root": str(path), "version": root.version,
            "revoked_at": key.status_changed_at.isoformat() if key.status_changed_at else None,
            "note": f"key {key.label} is already revoked in trust root v{root.version}; nothing to approve"})
    new = change_key_status(root, key.key_id, KeyStatus.REVOKED, _reason(ctx, run), ctx.now)
    new = new.model_copy(update={"version": root.version + 1})
    return {"summary": f"revoke key {key.label} ({key.key_id[:16]}) in trust root v{root.version} -> "
                       f"v{root.version + 1}",
            "trust_root": str(path), "key_id": key.key_id, "key_label": key.label,
            "key_roles": [r.value for r in key.roles], "current_version": root.version,
            "current_body_sha256": root_body_sha256(root), "new_version": new.version,
            "new_body_sha256": root_body_sha256(new), "new_root": new.model_dump(mode="json", exclude_none=True),
            "warnings": _threshold_warnings(new)}


def revoke_stale(ctx: Context, run: PlaybookRun, plan: dict[str, Any]) -> str | None:
    from ringward.core.trust.rotation import root_body_sha256

    current = common.load_root(Path(plan["trust_root"]))
    if root_body_sha256(current) != plan["current_body_sha256"]:
        return f"the trust root is v{current.version} with another body than the planned v{plan['current_version']}"
    return None


def revoke_prepare(ctx: Context, run: PlaybookRun, plan: dict[str, Any]) -> TrustRoot | None:
    """Sign version N+1 with the root keys given and verify it as a rotation step -- before the
    approval is consumed, so a missing key or a threshold not met costs no approval."""
    from ringward.core.trust.rotation import root_body_sha256, sign_root, verify_rotation
    from ringward.operations.trust.keys import load_signing_key

    path = Path(plan["trust_root"])
    current = common.load_root(path)
    if current.version == plan["new_version"] and root_body_sha256(current) == plan["new_body_sha256"]:
        return None  # written already (a run interrupted after the replace): execute records it
    keys = [Path(k) for k in ctx.options.get("root_keys") or []]
    if not keys:
        raise InputError(f"--root-key: revoking key {plan['key_label']} writes trust root v{plan['new_version']}, "
                         f"which a threshold of v{plan['current_version']}'s root keys must sign; give the root-role "
                         "private key(s) (PKCS#8 PEM), one --root-key each")
    signed = TrustRoot.model_validate(plan["new_root"])
    if root_body_sha256(signed) != plan["new_body_sha256"]:
        raise StateError(f"playbook run {run.run_id}: the planned trust root v{plan['new_version']} no longer has the "
                         "approved body; the run record was altered")
    for key_path in keys:
        if key_path.is_dir():
            raise InputError(f"--root-key {key_path}: is a directory, expected a PEM file")
        private = load_signing_key(key_path)
        assert private is not None  # a path was given
        signed = sign_root(signed, private, signer=ctx.actor)
    verify_rotation(current, signed, ctx.now)
    return signed


def revoke_execute(ctx: Context, run: PlaybookRun, plan: dict[str, Any], prepared: Any) -> StepResult:
    from ringward.core.common.jsonio import dumps_document
    from ringward.core.trust.rotation import root_body_sha256
    from ringward.operations.common.files import atomic_write
    from ringward.operations.trust.rotation import KIND_ROTATION, chain_summary, update_trust_root

    path = Path(plan["trust_root"])
    current = common.load_root(path)
    if prepared is None:
        key = _key(run, current)
        if key.status is not KeyStatus.REVOKED or root_body_sha256(current) != plan["new_body_sha256"]:
            raise StateError(f"trust root {path}: v{current.version} is neither the planned v{plan['current_version']} "
                             f"nor the planned v{plan['new_version']}")
        return StepResult(StepStatus.DONE, {"trust_root": str(path), "version": current.version,
                                            "body_sha256": plan["new_body_sha256"], "revoked_key_id": key.key_id,
                                            "note": "trust root already replaced by this run"})
    signed: TrustRoot = prepared
    out = run_dir(run.run_id) / f"trust-root.v{signed.version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, dumps_document(signed.model_dump(mode="json", exclude_none=True)), overwrite=True)
    outcome = update_trust_root(path, [out], now=ctx.now, actor=ctx.actor, record=False,
                                time_overridden=bool(ctx.options.get("time_overridden")))
    summary = chain_summary(outcome.chain)
    record = ctx.store.append(EvidenceDraft(
        kind=KIND_ROTATION, actor=ctx.actor, flow_run_id=ctx.flow_run_id,
        subject=EvidenceSubject(status="accepted", success=True),
        payload={"decision": "accepted", "trust_root": str(path), **summary, "verified_at": ctx.now.isoformat(),
                 "time_overridden": bool(ctx.options.get("time_overridden")), "playbook_run": run.run_id,
                 "revoked_key_id": plan["key_id"], "signed_file": str(out)}), now=ctx.now)
    return StepResult(StepStatus.DONE, {"trust_root": str(path), "previous_version": summary["previous_version"],
                                        "version": summary["version"], "body_sha256": summary["body_sha256"],
                                        "signed_by_previous": summary["steps"][-1]["signed_by_previous"],
                                        "signed_by_new": summary["steps"][-1]["signed_by_new"],
                                        "revoked_key_id": plan["key_id"], "file": str(out),
                                        "warnings": plan.get("warnings", [])}, (record.id,))


# --- list-affected -----------------------------------------------------------------------------------------


def _signed_by(signature: Any, key: TrustedKey) -> bool:
    return pb.signature_names_key(signature, key_id=key.key_id, public_key_sha256=key.public_key_sha256)


def _package_signed_by(package_dir: Path, names: list[Any], key: TrustedKey) -> bool:
    from ringward.core.common.paths import is_safe_relative_name
    from ringward.core.trust.signatures import MAX_SIGNATURE_BYTES

    for name in names[:2000]:
        if not isinstance(name, str) or not is_safe_relative_name(name) or not name.endswith(".sig.json"):
            continue
        path = package_dir / name
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SIGNATURE_BYTES:
            continue
        try:
            if _signed_by(json.loads(path.read_bytes()), key):
                return True
        except (ValueError, OSError):
            continue
    return False


def _package_digest(record: Any, package_dir: Path) -> str | None:
    import hashlib

    digest = common.checksums_digest(package_dir)
    if digest is None:  # the package is gone: the copy its evidence bundle keeps
        data = common.bundle_bytes(record, "package/checksums.txt")
        digest = None if data is None else "sha256:" + hashlib.sha256(data).hexdigest()
    return digest


def list_affected(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.core.promotion import channel_request as cr
    from ringward.core.promotion import rollout as ro
    from ringward.operations.release.release_ops import KIND_PACKAGE, KIND_VERIFY
    from ringward.operations.remediation.remediation_ops import state as remediation_state
    from ringward.store.remediation.state import REQUESTS

    key = _key(run, common.load_root(Path(run.inputs["trust_root"])))
    packages: dict[str, dict[str, Any]] = {}

    def add_package(path: str, version: Any, record: Any, source: str) -> None:
        entry = packages.get(path)
        if entry is None:
            packages[path] = {"package_dir": path, "version": version, "digest": _package_digest(record, Path(path)),
                              "evidence_ids": [record.id], "sources": [source]}
        else:
            entry["evidence_ids"].append(record.id)
            if source not in entry["sources"]:
                entry["sources"].append(source)

    for record in common.scan(ctx.store, KIND_VERIFY):
        payload = record.payload
        if key.key_id in (payload.get("signers") or []) and isinstance(payload.get("package"), str):
            add_package(str(Path(payload["package"]).absolute()), payload.get("version"), record, "verification")
    for record in common.scan(ctx.store, KIND_PACKAGE):
        payload = record.payload
        if not isinstance(payload.get("package_dir"), str):
            continue
        package_dir = Path(payload["package_dir"]).absolute()
        if package_dir.is_dir() and _package_signed_by(package_dir, list(payload.get("signature_files") or []), key):
            add_package(str(package_dir), payload.get("version"), record, "packaging")

    requests: list[dict[str, Any]] = []
    for record in common.scan(ctx.store, cr.KIND_REQUEST, status="requested"):
        payload = record.payload
        document = payload.get("request")
        if payload.get("signer_key_id") == key.key_id or (isinstance(document, dict)
                                                          and _signed_by(document.get("signature"), key)):
            requests.append({"kind": "channel-promotion", "request_id": payload.get("request_id"),
                             "channel": payload.get("channel"), "approval_id": payload.get("approval_id"),
                             "version": (payload.get("release") or {}).get("version"), "evidence_id": record.id})
    for record in common.scan(ctx.store, ro.KIND_REQUEST, status="requested"):
        payload = record.payload
        if payload.get("signature_key_id") in (key.key_id, key.public_key_sha256[:16]):
            requests.append({"kind": "rollout-promotion", "request_id": payload.get("request_id"), "channel": None,
                             "approval_id": payload.get("approval_id"),
                             "version": (payload.get("release") or {}).get("version"), "evidence_id": record.id})
    for record in common.scan(ctx.store, ro.KIND_ROLLBACK_REQUEST):
        payload = record.payload
        document = payload.get("request")
        if isinstance(document, dict) and _signed_by(document.get("signature"), key):
            requests.append({"kind": "rollout-rollback", "request_id": payload.get("request_id"), "channel": None,
                             "approval_id": payload.get("approval_id"),
                             "version": (payload.get("release") or {}).get("version"), "evidence_id": record.id})

    remediation: list[dict[str, Any]] = []
    for entry in remediation_state(ctx.store).list(REQUESTS):
        value = entry.value
        document = value.get("request") or {}
        if value.get("signer_key_id") == key.key_id or _signed_by(document.get("signature"), key):
            remediation.append({"request_id": entry.key, "channel": document.get("channel"),
                                "status": value.get("status"), "approval_id": value.get("approval_id"),
                                "version": (document.get("release") or {}).get("version")})
    found = sorted(packages.values(), key=lambda p: p["package_dir"])
    return StepResult(StepStatus.DONE, {
        "key_id": key.key_id, "key_label": key.label,
        "counts": {"packages": len(found), "promotion_requests": len(requests),
                   "remediation_requests": len(remediation)},
        "packages": pb.listed(found), "promotion_requests": pb.listed(requests),
        "remediation_requests": pb.listed(remediation),
        "scan_limit_per_kind": common.MAX_SCAN})


# --- re-verify ---------------------------------------------------------------------------------------------


def _request_document(ctx: Context, item: dict[str, Any]) -> dict[str, Any] | None:
    from ringward.core.promotion import rollout as ro

    record = ctx.store.get_evidence(int(item["evidence_id"]))
    if item["kind"] == "rollout-promotion":
        data = common.bundle_bytes(record, ro.PROMOTION_REQUEST_FILE)
        if data is None:
            return None
        document = json.loads(data)
    else:
        document = record.payload.get("request")
    return document if isinstance(document, dict) else None


def _verify_request(ctx: Context, root: TrustRoot, item: dict[str, Any]) -> dict[str, Any]:
    from ringward.core.promotion import channel_request as cr
    from ringward.core.promotion.signed_payload import (
        CHANNEL_PROMOTION_SIGNATURE,
        RINGWARD_PAYLOAD_SIGNATURE,
        ROLLOUT_PROMOTION_SIGNATURE,
        verify_signed_payload,
    )

    document = _request_document(ctx, item)
    if document is None:
        return {**item, "result": "unverifiable", "error": "the signed request is no longer readable from evidence"}
    schema, label = {"channel-promotion": (CHANNEL_PROMOTION_SIGNATURE, cr.LABEL),
                     "rollout-promotion": (ROLLOUT_PROMOTION_SIGNATURE, "rollout promotion request"),
                     "rollout-rollback": (RINGWARD_PAYLOAD_SIGNATURE, "rollback request")}[item["kind"]]
    try:
        verify_signed_payload(document, trust_root=root, role=Role.PROMOTION, now=ctx.now, label=label,
                              schema_version=schema)
    except RingwardError as exc:
        return {**item, "result": "invalid", "error": exc.message[:500]}
    return {**item, "result": "valid", "error": None}


def _verify_remediation(ctx: Context, root: TrustRoot, item: dict[str, Any]) -> dict[str, Any]:
    from ringward.core.promotion.signed_payload import verify_signed_payload
    from ringward.core.remediation import request as rq
    from ringward.operations.remediation.remediation_ops import state as remediation_state
    from ringward.store.remediation.state import REQUESTS

    entry = remediation_state(ctx.store).get(REQUESTS, item["request_id"])
    document = None if entry is None else entry.value.get("request")
    if not isinstance(document, dict):
        return {**item, "result": "unverifiable", "error": "the request is no longer recorded"}
    try:
        verify_signed_payload(document, trust_root=root, role=Role.REMEDIATION, now=ctx.now, label=rq.LABEL,
                              schema_version=rq.REQUEST_SIGNATURE)
    except RingwardError as exc:
        return {**item, "result": "invalid", "error": exc.message[:500]}
    return {**item, "result": "valid", "error": None}


def _verify_package(ctx: Context, root: TrustRoot, item: dict[str, Any]) -> dict[str, Any]:
    from ringward.operations.release.verify import verify_package

    path = Path(item["package_dir"])
    if not path.is_dir():
        return {**item, "result": "unverifiable", "error": f"{path}: package directory no longer exists"}
    verification = verify_package(path, root, now=ctx.now)
    digest = common.checksums_digest(path) or item.get("digest")
    if verification.valid:
        return {**item, "digest": digest, "result": "valid", "error": None}
    first = verification.errors[0].message if verification.errors else "verification incomplete"
    return {**item, "digest": digest, "result": "invalid", "error": first[:500]}


def re_verify(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    root = common.load_root(Path(run.inputs["trust_root"]))
    listing = run.step("list-affected").output
    packages = [_verify_package(ctx, root, p) for p in listing.get("packages", [])]
    requests = [_verify_request(ctx, root, r) for r in listing.get("promotion_requests", [])]
    remediation = [_verify_remediation(ctx, root, r) for r in listing.get("remediation_requests", [])]
    affected = [x for x in (*packages, *requests, *remediation) if x["result"] != "valid"]
    digests = {p["digest"] for p in packages if p["result"] != "valid" and p.get("digest")}
    channels = {r["channel"] for r in (*requests, *remediation) if r["result"] != "valid" and r.get("channel")}
    for state in channel_repo(ctx.store).list():
        carried = {r.digest for r in (state.current, state.high_water) if r is not None}
        if carried & digests:
            channels.add(state.channel)
    results = [x["result"] for x in (*packages, *requests, *remediation)]
    return StepResult(StepStatus.DONE, {
        "trust_root_version": root.version,
        "counts": {"valid": results.count("valid"), "invalid": results.count("invalid"),
                   "unverifiable": results.count("unverifiable"), "affected": len(affected)},
        "packages": packages, "promotion_requests": requests, "remediation_requests": remediation,
        "affected_package_digests": sorted(digests), "channels": sorted(c for c in channels if isinstance(c, str))})


# --- hold-channels, notify, incident -------------------------------------------------------------------------


def hold_plan(ctx: Context, run: PlaybookRun) -> dict[str, Any] | StepResult:
    channels = run.step("re-verify").output.get("channels", [])
    why = f"signing key {run.inputs['key_id'][:16]} compromised and revoked"
    return common.hold_plan(ctx, channels, common.hold_reason(run, why))


def notify(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.core.delivery.event import ConnectorEvent, Severity
    from ringward.core.errors import DeliveryFailedError
    from ringward.operations.delivery.delivery_ops import deliver_events, load_connector_config

    config_path = ctx.options.get("connectors")
    if not config_path:
        return StepResult(StepStatus.SKIPPED, {"reason": "no connector config (--connectors or RINGWARD_CONNECTORS)"})
    config = load_connector_config(Path(config_path))
    revoked = run.step("revoke-key").output
    verified = run.step("re-verify").output
    holds = run.step("hold-channels").output
    held = sorted({*holds.get("held", []), *holds.get("already_held", {})})
    counts = verified.get("counts", {})
    event = ConnectorEvent(
        event_id=f"playbook:{run.run_id}:notify", event_type="ringward.playbook.key-compromise",
        created_at=ctx.now, severity=Severity.CRITICAL, source=EVENT_SOURCE, session_id=run.run_id,
        actor=ctx.actor, channel=held[0] if len(held) == 1 else None,
        title=f"Signing key {run.inputs['key_id'][:16]} compromised: revoked in trust root "
              f"v{revoked.get('version', '?')}"[:250],
        summary=(f"Playbook key-compromise run {run.run_id}: key {run.inputs['key_id']} revoked in "
                 f"{run.inputs['trust_root']} (v{revoked.get('version', '?')}). Re-verified against it: "
                 f"{counts.get('invalid', 0)} invalid, {counts.get('unverifiable', 0)} unverifiable, "
                 f"{counts.get('valid', 0)} still valid. Channels held: {', '.join(held) or 'none'}. "
                 "Update pinned trust roots (`ringward trust update`) everywhere.")[:8000],
        attributes={"run_id": run.run_id, "key_id": run.inputs["key_id"], "trust_root_version": revoked.get("version"),
                    "counts": counts, "held_channels": held,
                    "affected_package_digests": verified.get("affected_package_digests", [])[:200]})
    providers = str(ctx.options.get("providers") or "all")
    (delivered,) = deliver_events([event], config, store=ctx.store, providers=providers, actor=ctx.actor,
                                  flow_run_id=ctx.flow_run_id, source=EVENT_SOURCE)
    ids = (delivered.evidence_id,) if delivered.evidence_id else ()
    if not delivered.success:
        failed = "; ".join(f"{r.destination}: {r.error or r.status.value}" for r in delivered.failed)
        raise DeliveryFailedError(f"notify: event {event.event_id} not delivered ({failed[:500]}); re-run the "
                                  "playbook to retry it")
    return StepResult(StepStatus.DONE, {"event_id": event.event_id, "delivery_evidence_id": delivered.evidence_id,
                                        "destinations": [r.destination for r in delivered.results]}, ids)


def incident(ctx: Context, run: PlaybookRun) -> StepResult:
    from ringward.core.incidents.record import IncidentSeverity, IncidentType

    revoked = run.step("revoke-key").output
    listing = run.step("list-affected").output
    verified = run.step("re-verify").output
    holds = run.step("hold-channels").output
    held = sorted({*holds.get("held", []), *holds.get("already_held", {})})
    counts = listing.get("counts", {})
    subject = (f"signing key {listing.get('key_label')} ({run.inputs['key_id'][:16]}) compromised and revoked in "
               f"trust root v{revoked.get('version', '?')}; {counts.get('packages', 0)} package(s), "
               f"{counts.get('promotion_requests', 0)} promotion and {counts.get('remediation_requests', 0)} "
               "remediation request(s) signed by it")
    requests = [f"{r['kind']}:{r['request_id']}" for r in verified.get("promotion_requests", [])
                if r["result"] != "valid"]
    remediation = [r["request_id"] for r in verified.get("remediation_requests", []) if r["result"] != "valid"]
    note = (f"playbook key-compromise run {run.run_id}; evidence {', '.join(str(i) for i in run.evidence_ids()[:60])}; "
            f"failing re-verification: promotion requests {', '.join(requests[:40]) or 'none'}; remediation requests "
            f"{', '.join(remediation[:40]) or 'none'}; held channels {', '.join(held) or 'none'}")
    return common.open_incident(ctx, run, type=IncidentType.SUPPLY_CHAIN, severity=IncidentSeverity.CRITICAL,
                                subject=subject, packages=verified.get("affected_package_digests", []),
                                channels=held, note=note)


HANDLERS: Final = {
    "revoke-key": Handler(plan=revoke_plan, stale=revoke_stale, prepare=revoke_prepare, execute=revoke_execute),
    "list-affected": Handler(run=list_affected),
    "re-verify": Handler(run=re_verify),
    "hold-channels": Handler(plan=hold_plan, execute=common.hold_execute),
    "notify": Handler(run=notify),
    "incident": Handler(run=incident),
}
