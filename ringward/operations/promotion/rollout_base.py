"""Shared pieces of the rollout steps (package-internal; the public entry point is
:mod:`ringward.operations.promotion.rollout_ops`): constants, the rollout ledger, output and
evidence-bundle staging, the one-transaction decision of the deciding steps, refusal records,
trust root and promotion keys, and the rollout's current state."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.approvals.rules import Approval
from ringward.core.common.checksums import render_checksums
from ringward.core.common.paths import check_relative_name
from ringward.core.errors import (
    InputError,
    OutputExistsError,
    RingwardError,
    UntrustedKeyError,
)
from ringward.core.evidence.records import EvidenceArtifact, EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.core.promotion import rollout as ro
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import Role, TrustRoot
from ringward.operations.common.files import read_capped
from ringward.settings import evidence_root
from ringward.store.promotion.executions_repo import ApprovalUse, RolloutLedger, RolloutStep

if TYPE_CHECKING:
    from ringward.store import Store

#: the environment variable holding the promotion signing key (PEM text), like the reference's
#: ``CAVRA_ROLLOUT_PROMOTION_SIGNING_KEY``
PROMOTION_KEY_ENV = "RINGWARD_PROMOTION_SIGNING_KEY"
REFERENCE_PROMOTION_KEY_ENV = "CAVRA_ROLLOUT_PROMOTION_SIGNING_KEY"
MAX_FILE_BYTES = ro.MAX_DOCUMENT_BYTES
REFUSAL_SCHEMA = "ringward.rollout-refusal.v1"
#: connector delivery sources (reference §7.5)
PROMOTION_DELIVERY_SOURCE = "release_governance_promotion"
ROLLBACK_DELIVERY_SOURCE = "release_governance_rollback"


def utc_now() -> datetime:
    return datetime.now(UTC)


def ledger(store: Store) -> RolloutLedger:
    return RolloutLedger(store)


# --- files -----------------------------------------------------------------------------------------


def _resolve(path: Path, filename: str) -> Path:
    """A document given as its file or as the directory holding it."""
    return path / filename if path.is_dir() else path


def _read(path: Path, *, what: str) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    return read_capped(path, MAX_FILE_BYTES, source=str(path))


def _check_output(output: Path) -> Path:
    output = output.absolute()
    if output.exists() or output.is_symlink():
        raise OutputExistsError(f"{output}: already exists; refusing to overwrite (choose another --output)")
    return output


def _stage(output: Path, files: Mapping[str, bytes], *, checksums: bool) -> Path:
    """Write ``files`` (+ ``checksums.txt``) into a temporary sibling of ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        digests = {}
        for name, data in files.items():
            check_relative_name(name, source="output file")
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
        if checksums:
            (staging / ro.CHECKSUMS_FILE).write_bytes(render_checksums(digests))
        os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp makes 0700; outputs are for readers
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _publish(staging: Path, output: Path) -> None:
    try:
        os.rename(staging, output)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputExistsError(f"{output}: cannot move the output into place ({exc.strerror})") from exc


@dataclass(frozen=True)
class _Bundle:
    relative: str
    path: Path
    artifacts: tuple[EvidenceArtifact, ...]


def _stage_bundle(kind: str, files: Mapping[str, bytes], now: datetime) -> _Bundle:
    """An evidence bundle (copies of the step's files + checksums.txt) under the evidence root."""
    moment = now.astimezone(UTC)
    relative = f"{kind}/{moment:%Y/%m/%d}/{moment:%H%M%S}-{uuid.uuid4().hex[:12]}"
    final = evidence_root() / relative
    staging = _stage(final, files, checksums=True)
    os.rename(staging, final)
    artifacts = tuple(
        EvidenceArtifact(name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
        for name, data in sorted(files.items())
    )
    return _Bundle(relative, final, artifacts)


def _record(
    store: Store,
    step: RolloutStep,
    *,
    kind: str,
    payload: dict[str, Any],
    subject: EvidenceSubject,
    files: Mapping[str, bytes],
    now: datetime,
    flow_run_id: str | None,
    replay_message: str | None = None,
) -> tuple[RolloutStep, EvidenceRecord]:
    """Bundle + evidence record + ledger row (the record and the row in one transaction)."""
    bundle = _stage_bundle(kind, files, now)
    draft = EvidenceDraft(
        kind=kind,
        actor=step.actor,
        subject=subject,
        flow_run_id=flow_run_id,
        payload=payload,
        bundle_dir=bundle.relative,
        artifacts=bundle.artifacts,
    )
    try:
        return ledger(store).record(step, draft, now=now, replay_message=replay_message)
    except BaseException:
        shutil.rmtree(bundle.path, ignore_errors=True)
        raise


@dataclass(frozen=True)
class _Made:
    """What a deciding step writes once its approvals are consumed: the document, its files (the
    output and the evidence bundle), the evidence payload and subject."""

    doc: dict[str, Any]
    files: Mapping[str, bytes]
    payload: dict[str, Any]
    subject: EvidenceSubject
    document_sha256: str


def _decide(
    store: Store,
    step: RolloutStep,
    *,
    kind: str,
    out: Path,
    consume: Sequence[ApprovalUse],
    make: Callable[[tuple[Approval, ...]], _Made],
    now: datetime,
    flow_run_id: str | None,
    replay_message: str,
) -> tuple[_Made, EvidenceRecord, tuple[Approval, ...]]:
    """A deciding step (execution, rollback) as one transaction: consume ``consume`` (compare-and-swap,
    once each), then ``make(consumed)`` the document, stage the output and the evidence bundle, and
    append the evidence record + ledger row -- all or nothing
    (:meth:`~ringward.store.promotion.executions_repo.RolloutLedger.decide`). If anything refuses,
    no approval is consumed, nothing is recorded and the staged files are removed; once committed,
    the output is renamed into place."""
    made: list[_Made] = []
    staged: list[Path] = []

    def build(consumed: tuple[Approval, ...]) -> tuple[RolloutStep, EvidenceDraft]:
        result = make(consumed)
        made.append(result)
        staged.append(_stage(out, result.files, checksums=True))
        bundle = _stage_bundle(kind, result.files, now)
        staged.append(bundle.path)
        draft = EvidenceDraft(kind=kind, actor=step.actor, subject=result.subject, flow_run_id=flow_run_id,
                              payload=result.payload, bundle_dir=bundle.relative, artifacts=bundle.artifacts)
        return replace(step, document_sha256=result.document_sha256), draft

    try:
        _, evidence, consumed = ledger(store).decide(step, build, now=now, consume=consume,
                                                     flow_run_id=flow_run_id, replay_message=replay_message)
    except BaseException:
        for path in staged:
            shutil.rmtree(path, ignore_errors=True)
        raise
    _publish(staged[0], out)
    return made[-1], evidence, consumed


def _evidence_ref(record: EvidenceRecord) -> dict[str, Any]:
    return {
        "evidence_id": str(record.id),
        "kind": record.kind,
        "record_hash": record.record_hash,
        "payload_sha256": record.payload_sha256,
        "bundle_dir": record.bundle_dir,
    }


# --- refusals ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def refusals(
    store: Store, step: str, *, actor: str, now: datetime, flow_run_id: str | None, context: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Record a refused step: a verification or state refusal becomes one ``rollout-refusal``
    evidence record (bad input does not: nothing was decided). ``context`` may be filled in by
    the step as it learns ids."""
    try:
        yield context
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            with contextlib.suppress(Exception):  # the refusal itself must reach the caller
                store.append(refusal_draft(step, exc, actor=actor, now=now, flow_run_id=flow_run_id, context=context),
                             now=now)
        raise


def refusal_draft(
    step: str, exc: RingwardError, *, actor: str, now: datetime, flow_run_id: str | None, context: dict[str, Any]
) -> EvidenceDraft:
    safe_actor = actor if actor and ro._LINE.match(actor) and len(actor) <= 256 else "unknown"
    payload = {
        "schema_version": REFUSAL_SCHEMA,
        "step": step,
        "code": exc.code,
        "error_type": type(exc).__name__,
        "message": exc.message[:4000],
        "actor": safe_actor,
        "at": ro.iso(now),
        **{k: v for k, v in context.items() if v is not None},
    }
    return EvidenceDraft(
        kind=ro.KIND_REFUSAL,
        actor=safe_actor,
        flow_run_id=flow_run_id,
        subject=EvidenceSubject(
            status="refused",
            execution_status=step,
            environment=_short(context.get("environment")),
            ring=_short(context.get("target_ring")),
            approval_id=_short(context.get("approval_id")),
            release_version=_short(context.get("release_version")),
            success=False,
        ),
        payload=payload,
    )


def _short(value: Any) -> str | None:
    if isinstance(value, str) and value and len(value) <= 256 and not any(ord(c) < 32 for c in value):
        return value
    return None


# --- trust and keys ----------------------------------------------------------------------------------


def _load_root(trust_root: Path | str) -> TrustRoot:
    from ringward.operations.trust.keys import load_trust_root

    return load_trust_root(Path(trust_root))


def load_promotion_key(path: Path | str | None, *, env: Mapping[str, str] | None = None) -> Ed25519PrivateKey:
    """The promotion signing key from ``path`` or ``$RINGWARD_PROMOTION_SIGNING_KEY`` (never the
    release key's variable: a release key must not sign promotions)."""
    from ringward.core.trust.keys import load_private_key_pem
    from ringward.operations.trust.keys import load_signing_key

    if path is not None:
        key = load_signing_key(Path(path))
        assert key is not None
        return key
    environ = os.environ if env is None else env
    for name in (PROMOTION_KEY_ENV, REFERENCE_PROMOTION_KEY_ENV):
        value = environ.get(name)
        if value:
            return load_private_key_pem(value.replace("\\n", "\n").encode("utf-8"), source=f"${name}")
    raise InputError(f"--signing-key: a promotion signing key is required (or set ${PROMOTION_KEY_ENV})")


def _check_promotion_key(key: Ed25519PrivateKey, root: TrustRoot, now: datetime) -> str:
    """Refuse to sign with anything but an active, in-window promotion-role key of the trust root."""
    key_id = public_key_of(key).key_id
    if key_id in root.trusted_keys(Role.PROMOTION, now):
        return key_id
    pinned = root.find(key_id)
    if pinned is None:
        raise UntrustedKeyError(f"--signing-key: key {key_id[:16]} is not pinned in the trust root")
    roles = ", ".join(sorted(r.value for r in pinned.roles))
    raise UntrustedKeyError(
        f"--signing-key: key {key_id[:16]} ({pinned.label}) has role(s) {roles} and status {pinned.status.value}, "
        "expected an active promotion-role key"
    )


def _current_state(store: Store, rollout_id: str) -> RolloutStep | None:
    steps = ledger(store).for_rollout(rollout_id)
    return steps[-1] if steps else None


def _state_after(store: Store, rollout_id: str, ring: str, status: str) -> tuple[str, str]:
    current = _current_state(store, rollout_id)
    if current is None or current.ring is None or current.status is None:
        return ring, status
    return current.ring, current.status
