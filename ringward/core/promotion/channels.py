"""Release channel state: the high-water mark, holds and the single-use rollback allowance (pure).

One :class:`ChannelState` per channel (``canary``, ``beta``, ``stable``, ...), persisted with
compare-and-swap by :mod:`ringward.store.promotion.channel_repo`. Rules (numbered so code and
tests can cite them):

- CH1 the high-water mark is the highest version ever promoted on the channel, with the digest
  (``sha256:<hex of checksums.txt>``) it had; it only moves up, when a channel promotion is
  executed (the endpoint export that consumes the approval).
- CH2 a candidate below the mark is a rollback (:class:`RollbackError`); the same version with
  other bytes is a conflict (:class:`VersionConflictError`); the same version with the same bytes
  may be exported again. Build metadata does not order (``1.2.3+a`` and ``1.2.3+b`` are the same
  version, so with different bytes they conflict).
- CH3 nothing is requested, exported or validated for a held channel (:class:`ChannelHeldError`);
  a hold names who, when and why, and only an unhold lifts it.
- CH4 the only way down is the rollback flow: the rollout-rollback executor grants a single-use
  allowance to the release promoted before the current one (from the channel's history); an
  export of exactly that version and digest is then accepted once, recorded as a rollback
  export, and the allowance is consumed. A rollback id is used at most once.
- CH5 a yanked version (the release-yank playbook) is never requested, exported, published or
  rolled back to again on that channel (:class:`YankedReleaseError`); the yank leaves the
  high-water mark where it is, so an older version is not silently promoted instead (CH2).

Time is a parameter; nothing here reads the clock.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import (
    BindingMismatchError,
    ChannelHeldError,
    ExecutionReplayError,
    InputError,
    RollbackError,
    StateError,
    VersionConflictError,
    YankedReleaseError,
)

CHANNEL_STATE_SCHEMA = "ringward.channel-state.v1"
CHANNEL_EVENT_SCHEMA = "ringward.channel-state-event.v1"
#: evidence kind of every channel state change (hold, unhold, promotion, rollback allowance)
KIND_CHANNEL_STATE = "release-channel-state"
#: promotions kept in a channel's stored history (the evidence chain keeps all of them)
MAX_HISTORY = 200

_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TEXT = re.compile(r"^[^\x00-\x08\x0b-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b-\x1f\x7f]*$")
_LINE = re.compile(r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")


def check_channel_name(value: str, *, option: str = "--channel") -> str:
    """A channel name: lowercase letters, digits and ``._-`` (1-64), as the channel manifest uses.

    Raises:
        InputError: naming the option and the value found.
    """
    if not isinstance(value, str) or not _CHANNEL.match(value):
        raise InputError(f"{option}: expected a channel name [a-z0-9._-] (1-64 characters), found {value!r}")
    return value


def normalise_digest(value: str, *, field: str = "digest") -> str:
    """``sha256:<64 lowercase hex>`` (a bare 64-hex digest is accepted and prefixed).

    Raises:
        InputError: anything else.
    """
    text = value.strip() if isinstance(value, str) else ""
    if re.fullmatch(r"[0-9a-f]{64}", text):
        text = "sha256:" + text
    if not _DIGEST.match(text):
        raise InputError(f"{field}: expected sha256:<64 lowercase hex>, found {value!r}")
    return text


def check_reason(value: str, *, option: str = "--reason") -> str:
    if not isinstance(value, str) or len(value) > 4096 or not _TEXT.match(value):
        raise InputError(f"{option}: expected visible text (at most 4096 characters), found {str(value)[:80]!r}")
    return value


def check_actor(value: str, *, option: str = "--actor") -> str:
    if not isinstance(value, str) or len(value) > 256 or not _LINE.match(value):
        raise InputError(f"{option}: expected a visible one-line name, found {str(value)[:80]!r}")
    return value


class ReleaseKind(StrEnum):
    PROMOTION = "promotion"
    ROLLBACK = "rollback"


class PromotedRelease(BaseModel):
    """One release promoted on a channel (by an endpoint export that consumed its approval)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    digest: str = Field(pattern=_DIGEST.pattern)
    promoted_at: datetime
    actor: str
    kind: ReleaseKind = ReleaseKind.PROMOTION
    export_id: str | None = None
    approval_id: str | None = None
    request_id: str | None = None
    target_ring: str | None = None
    #: set on rollback exports: the allowance (rollback id) they consumed
    rollback_id: str | None = None

    def same_release(self, version: str, digest: str) -> bool:
        return ReleaseVersion.parse(self.version) == ReleaseVersion.parse(version) and self.digest == digest


class ChannelHold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str
    reason: str
    at: datetime


class RollbackAllowance(BaseModel):
    """Single-use permission to export ``to_version``/``to_digest`` below the high-water mark."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rollback_id: str
    to_version: str
    to_digest: str
    from_version: str
    from_digest: str
    actor: str
    granted_at: datetime


class YankedRelease(BaseModel):
    """A version yanked on a channel (CH5): who, when, why, and the playbook run that did it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    digest: str | None = Field(default=None, pattern=_DIGEST.pattern)
    actor: str
    reason: str
    at: datetime
    ref: str | None = None


class ChannelState(BaseModel):
    """A channel's persisted state. ``version`` is the store's compare-and-swap counter (0: never
    written); ``updated_at``/``updated_by`` describe the last write."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.channel-state.v1"] = "ringward.channel-state.v1"
    channel: str
    high_water: PromotedRelease | None = None
    current: PromotedRelease | None = None
    hold: ChannelHold | None = None
    rollback_allowance: RollbackAllowance | None = None
    history: tuple[PromotedRelease, ...] = ()
    yanked: tuple[YankedRelease, ...] = ()
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def held(self) -> bool:
        return self.hold is not None

    def stored_value(self) -> dict[str, Any]:
        """What the store keeps (the CAS counter and write stamp live in the row)."""
        doc = self.model_dump(mode="json", exclude={"version", "updated_at", "updated_by"})
        if not self.yanked:  # rows of channels that never saw a yank keep their exact shape
            del doc["yanked"]
        return doc

    def to_document(self) -> dict[str, Any]:
        """``channel status --json``."""
        doc = self.model_dump(mode="json")
        doc["held"] = self.held
        doc["history"] = doc["history"][-20:]
        if not self.yanked:
            del doc["yanked"]
        return doc

    def yanked_entry(self, version: str) -> YankedRelease | None:
        """The yank of ``version`` (SemVer-equal) on this channel, if any."""
        if not self.yanked:
            return None
        wanted = ReleaseVersion.parse(version, field="version")
        return next((y for y in self.yanked if ReleaseVersion.parse(y.version) == wanted), None)


class CandidateVerdict(StrEnum):
    #: above the high-water mark, or the first release of the channel
    NEW = "new"
    #: exactly the high-water release again (same version, same bytes)
    SAME = "same"
    #: below the mark, matching the channel's rollback allowance (CH4)
    ROLLBACK = "rollback"


def check_not_held(state: ChannelState) -> None:
    """CH3."""
    if state.hold is not None:
        raise ChannelHeldError(
            f"channel {state.channel}: held by {state.hold.actor} since {state.hold.at.isoformat()} "
            f"({state.hold.reason[:200]}); unhold it first"
        )


def check_not_yanked(state: ChannelState, version: str) -> None:
    """CH5.

    Raises:
        YankedReleaseError: ``version`` was yanked on the channel.
    """
    entry = state.yanked_entry(version)
    if entry is not None:
        raise YankedReleaseError(
            f"channel {state.channel}: version {version} was yanked by {entry.actor} at {entry.at.isoformat()} "
            f"({entry.reason[:200]}); a yanked version is never promoted or exported again"
        )


def check_candidate(state: ChannelState, *, version: str, digest: str) -> CandidateVerdict:
    """CH2-CH4 for a candidate release of ``state.channel``.

    Raises:
        YankedReleaseError: the version was yanked on the channel (CH5).
        ChannelHeldError: the channel is held.
        VersionConflictError: the version is not canonical SemVer, or equals the mark with other bytes.
        RollbackError: the version is below the mark and no rollback allowance names it.
    """
    check_not_yanked(state, version)
    check_not_held(state)
    candidate = ReleaseVersion.parse(version, field="candidate version")
    mark = state.high_water
    if mark is None:
        return CandidateVerdict.NEW
    top = ReleaseVersion.parse(mark.version, field="high-water version")
    if candidate > top:
        return CandidateVerdict.NEW
    if candidate == top:
        if digest == mark.digest:
            return CandidateVerdict.SAME
        raise VersionConflictError(
            f"channel {state.channel}: version {version} equals the high-water mark {mark.version} but its "
            f"checksums digest is {digest}, expected {mark.digest} (same version re-published with other bytes)"
        )
    allowance = state.rollback_allowance
    if allowance is not None and allowance.to_digest == digest and \
            ReleaseVersion.parse(allowance.to_version) == candidate:
        return CandidateVerdict.ROLLBACK
    raise RollbackError(
        f"channel {state.channel}: version {version} is below the high-water mark {mark.version} "
        f"(promoted {mark.promoted_at.isoformat()}); the only way down is the rollback flow"
    )


def promote(state: ChannelState, release: PromotedRelease) -> ChannelState:
    """The state after ``release`` was exported (CH1, CH4). Re-checks :func:`check_candidate`."""
    verdict = check_candidate(state, version=release.version, digest=release.digest)
    high_water = state.high_water
    if verdict is CandidateVerdict.NEW:
        high_water = release
    allowance = state.rollback_allowance
    if verdict is CandidateVerdict.NEW:
        allowance = None  # the allowance named the release this one supersedes
    if verdict is CandidateVerdict.ROLLBACK:
        assert allowance is not None
        release = release.model_copy(update={"kind": ReleaseKind.ROLLBACK, "rollback_id": allowance.rollback_id})
        allowance = None
    elif release.kind is ReleaseKind.ROLLBACK:
        release = release.model_copy(update={"kind": ReleaseKind.PROMOTION, "rollback_id": None})
    history = (*state.history, release)[-MAX_HISTORY:]
    return state.model_copy(
        update={"high_water": high_water, "current": release, "rollback_allowance": allowance, "history": history}
    )


def hold(state: ChannelState, *, actor: str, reason: str, now: datetime) -> ChannelState:
    check_actor(actor)
    check_reason(reason)
    if state.hold is not None:
        raise StateError(
            f"channel {state.channel}: already held by {state.hold.actor} since {state.hold.at.isoformat()}"
        )
    return state.model_copy(update={"hold": ChannelHold(actor=actor, reason=reason, at=now)})


def unhold(state: ChannelState, *, actor: str, reason: str, now: datetime) -> ChannelState:
    check_actor(actor)
    check_reason(reason)
    if state.hold is None:
        raise StateError(f"channel {state.channel}: not held; nothing to unhold")
    return state.model_copy(update={"hold": None})


def previous_release(state: ChannelState) -> PromotedRelease | None:
    """The release promoted on the channel before the current one (another version or digest),
    skipping yanked versions (CH5)."""
    current = state.current
    if current is None:
        return None
    for entry in reversed(state.history[:-1]):
        if not entry.same_release(current.version, current.digest) and state.yanked_entry(entry.version) is None:
            return entry
    return None


def yank(state: ChannelState, *, version: str, digest: str | None, actor: str, reason: str, now: datetime,
         ref: str | None = None) -> tuple[ChannelState, bool]:
    """CH5: mark ``version`` yanked on the channel. The high-water mark, the current release and the
    history stay as they are. Returns (state, changed); yanking a yanked version again is a no-op.

    Raises:
        VersionConflictError: ``version`` is not canonical SemVer.
        InputError: malformed digest, actor or reason.
    """
    ReleaseVersion.parse(version, field="version")
    check_actor(actor, option="actor")
    check_reason(reason)
    wanted = None if digest is None else normalise_digest(digest, field="digest")
    if state.yanked_entry(version) is not None:
        return state, False
    entry = YankedRelease(version=version, digest=wanted, actor=actor, reason=reason, at=now, ref=ref)
    return state.model_copy(update={"yanked": (*state.yanked, entry)}), True


def grant_rollback(
    state: ChannelState, *, from_version: str, from_digest: str, rollback_id: str, actor: str, now: datetime
) -> tuple[ChannelState, bool]:
    """CH4: allow one export of the previously promoted release. Returns (state, changed); granting
    the same rollback id again is a no-op (the executor may retry).

    Raises:
        InputError: malformed digest, version, rollback id or actor.
        BindingMismatchError: the channel's current release is not ``from_version``/``from_digest``.
        StateError: the channel has no earlier promotion to roll back to.
        ExecutionReplayError: ``rollback_id`` was already used by a rollback export.
    """
    digest = normalise_digest(from_digest, field="from_digest")
    ReleaseVersion.parse(from_version, field="from_version")
    check_actor(actor, option="actor")
    if not isinstance(rollback_id, str) or not _LINE.match(rollback_id) or len(rollback_id) > 256:
        raise InputError(f"rollback_id: expected a visible one-line id, found {rollback_id!r}")
    if any(entry.rollback_id == rollback_id for entry in state.history):
        raise ExecutionReplayError(f"channel {state.channel}: rollback {rollback_id} was already exported")
    existing = state.rollback_allowance
    if existing is not None and existing.rollback_id == rollback_id:
        return state, False
    current = state.current
    if current is None or not current.same_release(from_version, digest):
        found = "nothing" if current is None else f"{current.version} ({current.digest})"
        raise BindingMismatchError(
            f"channel {state.channel}: rollback {rollback_id} expects current release {from_version} "
            f"({digest}), found {found}"
        )
    target = previous_release(state)
    if target is None:
        raise StateError(f"channel {state.channel}: no earlier promotion to roll back to from {from_version}")
    allowance = RollbackAllowance(
        rollback_id=rollback_id,
        to_version=target.version,
        to_digest=target.digest,
        from_version=current.version,
        from_digest=current.digest,
        actor=actor,
        granted_at=now,
    )
    return state.model_copy(update={"rollback_allowance": allowance}), True


def event_payload(
    before: ChannelState, after: ChannelState, *, event: str, actor: str, reason: str | None, now: datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Payload of a ``release-channel-state`` evidence record."""
    def brief(release: PromotedRelease | None) -> dict[str, Any] | None:
        return None if release is None else release.model_dump(mode="json")

    return {
        "schema_version": CHANNEL_EVENT_SCHEMA,
        "channel": after.channel,
        "event": event,
        "actor": actor,
        "reason": reason,
        "at": now.isoformat(),
        "held": after.held,
        "hold": None if after.hold is None else after.hold.model_dump(mode="json"),
        "high_water_before": brief(before.high_water),
        "high_water": brief(after.high_water),
        "current_before": brief(before.current),
        "current": brief(after.current),
        "rollback_allowance": None if after.rollback_allowance is None
        else after.rollback_allowance.model_dump(mode="json"),
        **(extra or {}),
    }
