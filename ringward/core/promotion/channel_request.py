"""Release channel promotion requests (reference §4.6), built and parsed without I/O.

The request file ``release-channel-promotion-request.json``
(``cavra.go-runtime.release-channel-promotion-request.v1``) keeps every reference field --
``request_id`` (``rcp_`` + sha256("<channel>:<version>:<ring>")[:12]), ``created_at``,
``channel``, ``target_ring``, ``release``, ``channel_manifest``, ``updater_policy``,
``workstation_targets``, ``controls``, the embedded ``approval`` record and the §3.2
``signature`` -- and adds what binds it: ``subject_digest`` (``sha256:<hex of checksums.txt>``,
the digest the approval is bound to), ``requested_by``, ``runtime`` and ``expires_at``.

What differs from the reference: the signature counts only under a pinned **promotion**-role key
(:mod:`ringward.core.promotion.signed_payload`), and the approval it names is looked up in the
Ringward store at export time; the embedded copy is a snapshot for people, never trusted.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.errors import InputError, MalformedDocumentError, MetadataMismatchError, validation_problem
from ringward.core.release.package_format import Channel, ChannelPolicy, ChannelsDocument, UpdaterPolicyDocument

REQUEST_SCHEMA = "cavra.go-runtime.release-channel-promotion-request.v1"
REQUEST_FILE = "release-channel-promotion-request.json"
REQUEST_SUMMARY = "release-channel-promotion-request.md"
#: the approval action a channel promotion is bound to (reference §5.3)
ACTION = "release_promote_channel_manifest"
#: evidence kind (reference ``metadata_kind``)
KIND_REQUEST = "release-channel-promotion-request"
LABEL = "release channel promotion request"
RULE_ID = "release.channel.promotion.require_approval"
POLICY_PACK = "cavra-release-integrity"
DEFAULT_APPROVER_GROUP = "Endpoint Change Advisory Board"
CONTROLS = (
    "release-package-verified",
    "channel-manifest-approval-required",
    "updater-policy-approval-required",
    "endpoint-export-bundle-required-before-publish",
    "rollback-package-reference-required",
)
#: largest request document read from disk
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def request_id_for(channel: str, version: str, ring: str) -> str:
    """``rcp_`` + the first 12 hex of sha256("<channel>:<version>:<ring>") (reference formula)."""
    return "rcp_" + hashlib.sha256(f"{channel}:{version}:{ring}".encode()).hexdigest()[:12]


def approval_target(channel: str, ring: str) -> str:
    """The approval target of a channel promotion: ``<channel>-><ring>``."""
    return f"{channel}->{ring}"


def checksums_digest(checksums: bytes) -> str:
    """``sha256:<hex>`` of a package's exact ``checksums.txt`` bytes (what approvals bind to)."""
    return "sha256:" + hashlib.sha256(checksums).hexdigest()


def select_channel(
    channels: ChannelsDocument, updater: UpdaterPolicyDocument, channel: str
) -> tuple[Channel, ChannelPolicy]:
    """The channel entry and its updater policy, with the reference's promotion checks.

    Raises:
        InputError: the package has no such channel.
        MetadataMismatchError: no policy for it, or it allows auto-update / skips approval.
    """
    entry = next((c for c in channels.channels if c.channel == channel), None)
    if entry is None:
        known = ", ".join(c.channel for c in channels.channels) or "none"
        raise InputError(f"--channel: release channel not found: {channel} (package has {known})")
    policy = next((p for p in updater.policies if p.channel == channel), None)
    if policy is None:
        raise MetadataMismatchError(f"updater policy channel not found: {channel}")
    if entry.approval_required is not True:
        raise MetadataMismatchError(f"release channel {channel} must require approval before promotion")
    if entry.auto_update is not False:
        raise MetadataMismatchError(f"release channel {channel} must disable auto_update before promotion")
    if policy.approval_required is not True:
        raise MetadataMismatchError(f"updater policy channel {channel} must require approval before promotion")
    return entry, policy


def allowed_rings(entry: Channel, policy: ChannelPolicy) -> list[str]:
    return list(dict.fromkeys([*entry.ring_order, *(r.ring for r in policy.rollout_rings)]))


def check_target_ring(entry: Channel, policy: ChannelPolicy, ring: str) -> str:
    """``ring`` must be one of the channel's ring order or its updater policy's rollout rings.

    Raises:
        InputError: naming the rings the channel has.
    """
    allowed = allowed_rings(entry, policy)
    if ring not in allowed:
        raise InputError(
            f"--target-ring: expected one of {', '.join(allowed)} for channel {entry.channel}, found {ring!r}"
        )
    return ring


def decision_for(
    *,
    request_id: str,
    channel: Channel,
    policy: ChannelPolicy,
    ring: str,
    repository: str,
    requested_by: str,
    runtime: str,
    verification: dict[str, Any],
) -> dict[str, Any]:
    """The decision bound into the approval record (reference §4.6 / §5.3)."""
    files = _files(runtime)
    return {
        "decision_id": f"{request_id}:decision",
        "session_id": f"release-channel:{channel.channel}:{channel.version}",
        "correlation_id": request_id,
        "action_type": ACTION,
        "target": approval_target(channel.channel, ring),
        "decision": "require_approval",
        "severity": "high",
        "rule_id": RULE_ID,
        "actor": requested_by,
        "policy_pack": POLICY_PACK,
        "repository": repository,
        "evidence_refs": [
            f"artifact://{files['channels']}",
            f"artifact://{files['updater_policy']}",
            "artifact://release-evidence.json",
        ],
        "metadata": {
            "channel": channel.channel,
            "target_ring": ring,
            "version": channel.version,
            "commit": channel.commit,
            "workstation_targets": [t.id for t in channel.workstation_targets],
            "updater_policy_controls": list(policy.hold_conditions),
            "package_verification": verification,
        },
    }


def _files(runtime: str) -> dict[str, str]:
    return {"channels": f"{runtime}.channels.json", "updater_policy": f"{runtime}.updater-policy.json"}


def embedded_approval(reference_item: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """The approval record as the request embeds it: the reference ``cavra.approval.v1`` shape of the
    stored approval, carrying the request's decision (decision_id, session_id, correlation_id)."""
    item = dict(reference_item)
    item.update(
        {
            "decision_id": decision["decision_id"],
            "session_id": decision["session_id"],
            "correlation_id": decision["correlation_id"],
            "decision": decision,
            "evidence_refs": [f"approval://{item['approval_id']}", *decision["evidence_refs"]],
        }
    )
    return item


def build_request(
    *,
    request_id: str,
    created_at: datetime,
    runtime: str,
    channel: Channel,
    policy: ChannelPolicy,
    ring: str,
    release: dict[str, Any],
    subject_digest: str,
    requested_by: str,
    channels_sha256: str,
    updater_sha256: str,
    approval: dict[str, Any],
    expires_at: datetime,
) -> dict[str, Any]:
    """The request document before signing (every reference field, plus the binding fields)."""
    files = _files(runtime)
    return {
        "schema_version": REQUEST_SCHEMA,
        "request_id": request_id,
        "created_at": created_at.isoformat(),
        "expires_at": expires_at.isoformat(),
        "channel": channel.channel,
        "target_ring": ring,
        "runtime": runtime,
        "requested_by": requested_by,
        "subject_digest": subject_digest,
        "release": release,
        "channel_manifest": {
            "path": files["channels"],
            "sha256": channels_sha256,
            "channel": channel.model_dump(mode="json"),
        },
        "updater_policy": {
            "path": files["updater_policy"],
            "sha256": updater_sha256,
            "policy": policy.model_dump(mode="json"),
        },
        "workstation_targets": [t.model_dump(mode="json") for t in channel.workstation_targets],
        "controls": list(CONTROLS),
        "approval": approval,
    }


def render_summary(document: dict[str, Any], *, signer_key_id: str) -> bytes:
    """``release-channel-promotion-request.md``: what people read before approving."""
    release = document["release"]
    approval = document["approval"]
    lines = [
        f"# Release channel promotion request {document['request_id']}",
        "",
        f"- Channel: `{document['channel']}` -> ring `{document['target_ring']}`",
        f"- Release: `{document.get('runtime')}` {release['version']} (commit `{release['commit']}`, "
        f"ref `{release['ref']}`, repository `{release['repository']}`)",
        f"- Package digest (approval subject): `{document['subject_digest']}`",
        f"- Requested by: {document['requested_by']} at {document['created_at']}",
        f"- Approval: `{approval['approval_id']}` ({approval['state']}), action `{ACTION}`, "
        f"target `{approval_target(document['channel'], document['target_ring'])}`, expires {approval['expires_at']}",
        f"- Signed by promotion key `{signer_key_id[:16]}`",
        "",
        "## Workstation targets",
        "",
    ]
    lines += [
        f"- `{t['id']}` {t['os']}/{t['arch']} via {t['management_tool']} (`{t['binary']}`)"
        for t in document["workstation_targets"]
    ] or ["- none"]
    lines += ["", "## Controls", ""] + [f"- {c}" for c in document["controls"]]
    lines += [
        "",
        "## Next steps",
        "",
        f"1. Another person approves: `ringward approval approve {approval['approval_id']} --actor NAME --reason TEXT`",
        f"2. Export: `ringward endpoint export <package> --channel {document['channel']} --promotion-request "
        f"{REQUEST_FILE} --trust-root trust-root.json --actor NAME --output DIR`",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


# --- parsing a request at the export boundary -------------------------------------------------------


class RequestRelease(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: str = Field(min_length=1, max_length=256)
    commit: str = Field(max_length=256)
    ref: str | None = Field(default=None, max_length=1024)
    repository: str | None = Field(default=None, max_length=512)


class RequestApproval(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    approval_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class ChannelPromotionRequest(BaseModel):
    """A signed request as read back (after its signature verified); reference fields extra-tolerant."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal["cavra.go-runtime.release-channel-promotion-request.v1"]
    request_id: str = Field(min_length=1, max_length=64)
    created_at: str
    channel: str = Field(min_length=1, max_length=64)
    target_ring: str = Field(min_length=1, max_length=128)
    release: RequestRelease
    approval: RequestApproval
    subject_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    requested_by: str | None = None
    controls: list[str] = []
    signature: dict[str, Any]


def parse_request(document: Any, *, source: str) -> ChannelPromotionRequest:
    """Validate a (signature-verified) request document.

    Raises:
        MalformedDocumentError: naming the first field that does not fit.
    """
    if not isinstance(document, dict):
        raise MalformedDocumentError(f"{source}: expected a JSON object, found {type(document).__name__}")
    try:
        return ChannelPromotionRequest.model_validate(document)
    except ValidationError as exc:
        raise MalformedDocumentError(f"{source}: {validation_problem(exc)}") from exc
