"""The incident record (``ringward.incident.v1``) and its state machine.

Fields come from the incident-response playbook (type, severity table), the security policy
(24 h reporter acknowledgement, 14-day response) and the advisory template's disclosure
timeline (Acknowledgement / Triage / Fix / Disclosure dates).

State table (every other (state, action) pair is refused with :class:`IncidentStateError`):

==============  ===========  ==============  ==================================================
state           action       next state      notes
==============  ===========  ==============  ==================================================
(none)          open         open            id derived from the dedup key (see :func:`incident_id`)
open            ack          acknowledged    the first action: stops the first-action clock
open            update       open            note and/or disclosure dates
acknowledged    ack          acknowledged    same actor again: no-op; another actor: refused
acknowledged    update       acknowledged    note and/or disclosure dates
acknowledged    close        closed          resolution required
open            close        --              refused: acknowledge first (records the first action)
closed          any          --              refused: closed is final
==============  ===========  ==============  ==================================================

There is **no reopen**. A closed incident is an audited, final record; when the same problem
comes back (the same dedup key opened again after the close) a *new* incident is opened, one
generation later, whose ``supersedes`` names the closed one. Re-running an open whose dedup key
maps to a not-yet-closed incident is a no-op that returns that incident.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import InputError, StateError

INCIDENT_SCHEMA: Final = "ringward.incident.v1"
MAX_UPDATES: Final = 1000
MAX_LINKS: Final = 500
#: the coordinated-disclosure window of the playbook ("default 90d")
DEFAULT_DISCLOSURE_WINDOW_DAYS: Final = 90


class IncidentStateError(StateError):
    """The incident's state forbids the action (closed is final, close before acknowledge...)."""

    code = "incident-state"


class IncidentType(StrEnum):
    SUPPLY_CHAIN = "supply-chain"
    LEAKED_CREDENTIAL = "leaked-credential"
    UNAUTHORIZED_RELEASE = "unauthorized-release"
    VULNERABILITY_REPORT = "vulnerability-report"
    KEV_MATCH = "kev-match"


class IncidentSeverity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class IncidentState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


#: the playbook's severity table: first-action SLA
FIRST_ACTION_SLA: Final[dict[IncidentSeverity, timedelta]] = {
    IncidentSeverity.CRITICAL: timedelta(hours=4),
    IncidentSeverity.HIGH: timedelta(hours=24),
    IncidentSeverity.MEDIUM: timedelta(hours=72),
    IncidentSeverity.LOW: timedelta(days=7),
}
#: the security policy: acknowledge the reporter within 24 h
REPORTER_ACK_TARGET: Final = timedelta(hours=24)
#: the security policy: respond to (fix) a report within 14 days
RESPONSE_TARGET: Final = timedelta(days=14)


class DisclosureField(StrEnum):
    """The advisory template's disclosure timeline (``**Acknowledgement**: <date>`` ...)."""

    ACKNOWLEDGEMENT = "acknowledgement"
    TRIAGE = "triage"
    FIX = "fix"
    DISCLOSURE = "disclosure"


class LinkKind(StrEnum):
    ADVISORY = "advisory"
    PACKAGE = "package"
    CVE = "cve"
    CHANNEL = "channel"


_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


#: credential shapes that must never reach an incident record (and so the evidence chain): a
#: leaked-credential incident names the credential (provider, owner, fingerprint), never its value
_CREDENTIAL = re.compile(
    r"(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|npm_[A-Za-z0-9]{30,}|pypi-[A-Za-z0-9_-]{40,}"
    r"|AKIA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,}|sk_live_[A-Za-z0-9]{20,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----)")


def refuse_credentials(text: str | None, option: str) -> None:
    """Raises InputError when ``text`` carries something shaped like a live credential."""
    if text and (found := _CREDENTIAL.search(text)):
        raise InputError(f"{option}: looks like a credential ({found.group(0)[:4]}...); name the credential "
                         "(provider, owner, fingerprint), never its value -- evidence is permanent")


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what}: expected a time with a UTC offset, found {value.isoformat()}")
    return value.astimezone(UTC)


class IncidentLinks(BaseModel):
    """What the incident is about: advisory ids, package digests (``sha256:`` of checksums.txt),
    CVE ids and the channels held because of it. Sorted and de-duplicated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    advisories: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    cves: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    @field_validator("advisories", "channels")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _NAME.match(item):
                raise ValueError(f"expected a name of [A-Za-z0-9._:/@+-] (max 200), found {item!r}")
        return tuple(sorted(set(value)))

    @field_validator("packages")
    @classmethod
    def _digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _DIGEST.match(item):
                raise ValueError(f"expected sha256:<64 lowercase hex>, found {item!r}")
        return tuple(sorted(set(value)))

    @field_validator("cves")
    @classmethod
    def _cves(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _CVE.match(item):
                raise ValueError(f"expected CVE-YYYY-NNNN, found {item!r}")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _capped(self) -> IncidentLinks:
        total = len(self.advisories) + len(self.packages) + len(self.cves) + len(self.channels)
        if total > MAX_LINKS:
            raise ValueError(f"at most {MAX_LINKS} links, found {total}")
        return self

    def merged(self, other: IncidentLinks) -> IncidentLinks:
        return IncidentLinks(advisories=self.advisories + other.advisories, packages=self.packages + other.packages,
                             cves=self.cves + other.cves, channels=self.channels + other.channels)


def parse_links(pairs: list[str] | tuple[str, ...], *, option: str = "--link") -> IncidentLinks:
    """``KIND=VALUE`` pairs (kind: advisory, package, cve, channel) -> links.

    Raises:
        InputError: naming the option, the pair and what was expected.
    """
    grouped: dict[str, list[str]] = {kind.value: [] for kind in LinkKind}
    for pair in pairs:
        kind, sep, value = pair.partition("=")
        if not sep or not value:
            raise InputError(f"{option} {pair!r}: expected KIND=VALUE")
        if kind not in grouped:
            raise InputError(f"{option} {pair!r}: kind must be one of {', '.join(grouped)}, found {kind!r}")
        grouped[kind].append(value)
    try:
        return IncidentLinks(advisories=tuple(grouped["advisory"]), packages=tuple(grouped["package"]),
                             cves=tuple(grouped["cve"]), channels=tuple(grouped["channel"]))
    except ValueError as exc:
        raise InputError(f"{option} {_first_problem(exc)}") from exc


def _first_problem(exc: ValueError) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = {"advisories": "advisory", "packages": "package", "cves": "cve", "channels": "channel"}.get(
            str(first["loc"][0]) if first["loc"] else "", "")
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)


class DisclosureTimeline(BaseModel):
    """The advisory template's dates; each set by ``incident update --disclosure FIELD=DATE``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledgement: datetime | None = None
    triage: datetime | None = None
    fix: datetime | None = None
    disclosure: datetime | None = None

    @field_validator("acknowledgement", "triage", "fix", "disclosure")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value, "disclosure date")

    def get(self, name: DisclosureField) -> datetime | None:
        value: datetime | None = getattr(self, name.value)
        return value


class IncidentUpdate(BaseModel):
    """One entry of the incident's history (every transition and every update)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    actor: str = Field(min_length=1, max_length=256)
    action: Literal["open", "ack", "update", "close"]
    note: str | None = Field(default=None, max_length=4000)
    disclosure: dict[str, datetime] = Field(default_factory=dict)
    previous_disclosure: dict[str, datetime | None] = Field(default_factory=dict)


class IncidentRecord(BaseModel):
    """One incident. Frozen: every transition returns a new record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.incident.v1"] = INCIDENT_SCHEMA
    incident_id: str = Field(pattern=r"^inc-[0-9a-f]{20}$")
    dedup_key: str = Field(min_length=1, max_length=512)
    generation: int = Field(ge=1)
    supersedes: str | None = None
    type: IncidentType
    severity: IncidentSeverity
    state: IncidentState = IncidentState.OPEN
    opened_at: datetime
    opened_by: str = Field(min_length=1, max_length=256)
    #: who reported it (credit, per their preference); None for detections (KEV match, scans)
    reporter: str | None = Field(default=None, min_length=1, max_length=256)
    summary: str = Field(min_length=1, max_length=1000)
    links: IncidentLinks = IncidentLinks()
    disclosure_window_days: int = Field(default=DEFAULT_DISCLOSURE_WINDOW_DAYS, ge=1, le=365)
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    resolution: str | None = Field(default=None, max_length=4000)
    disclosure_timeline: DisclosureTimeline = DisclosureTimeline()
    updates: tuple[IncidentUpdate, ...] = ()

    @field_validator("opened_at", "acknowledged_at", "closed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value, "time")

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if not value.strip() or "\n" in value or "\r" in value:
            raise ValueError("expected one non-empty line")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> IncidentRecord:
        acked = self.acknowledged_at is not None and self.acknowledged_by is not None
        closed = self.closed_at is not None and self.closed_by is not None and bool(self.resolution)
        expected = {IncidentState.OPEN: (False, False), IncidentState.ACKNOWLEDGED: (True, False),
                    IncidentState.CLOSED: (True, True)}[self.state]
        if (acked, closed) != expected:
            raise ValueError(f"state {self.state.value}: acknowledgement/closure fields disagree with the state")
        return self

    # --- clocks' inputs --------------------------------------------------------------------------

    @property
    def first_action_target(self) -> timedelta:
        return FIRST_ACTION_SLA[self.severity]

    def document(self) -> dict[str, object]:
        return self.model_dump(mode="json")


# --- ids -------------------------------------------------------------------------------------------


def default_dedup_key(*, type: IncidentType, severity: IncidentSeverity, summary: str, reporter: str | None,
                      links: IncidentLinks, opened_at: datetime) -> str:
    """Without ``--dedup-key`` the request itself is the key: the same open re-run (same fields,
    same ``--at``) is the same incident; anything different is a new one."""
    material = {"type": type.value, "severity": severity.value, "summary": summary.strip(), "reporter": reporter,
                "links": links.model_dump(mode="json"), "opened_at": opened_at.astimezone(UTC).isoformat()}
    return "request:sha256:" + hashlib.sha256(dumps_canonical(material)).hexdigest()


def kev_dedup_key(cve: str, package_digest: str) -> str:
    """One KEV-match incident per (CVE, package digest)."""
    return f"kev-match:{cve}:{package_digest}"


def incident_id(dedup_key: str, generation: int) -> str:
    """``inc-`` + 20 hex of sha256(schema, dedup key, generation): deterministic per opening request."""
    digest = hashlib.sha256(f"{INCIDENT_SCHEMA}\0{dedup_key}\0{generation}".encode()).hexdigest()
    return "inc-" + digest[:20]


# --- transitions (pure) ------------------------------------------------------------------------------


def open_incident(*, dedup_key: str, generation: int, supersedes: str | None, type: IncidentType,
                  severity: IncidentSeverity, summary: str, reporter: str | None, links: IncidentLinks,
                  actor: str, now: datetime, disclosure_window_days: int = DEFAULT_DISCLOSURE_WINDOW_DAYS,
                  ) -> IncidentRecord:
    when = _utc(now, "now")
    return IncidentRecord(
        incident_id=incident_id(dedup_key, generation), dedup_key=dedup_key, generation=generation,
        supersedes=supersedes, type=type, severity=severity, opened_at=when, opened_by=actor, reporter=reporter,
        summary=summary, links=links, disclosure_window_days=disclosure_window_days,
        updates=(IncidentUpdate(at=when, actor=actor, action="open"),),
    )


def _not_before_open(incident: IncidentRecord, when: datetime, what: str) -> None:
    if when < incident.opened_at:
        raise InputError(f"{what}: {when.isoformat()} is before the incident was opened "
                         f"({incident.opened_at.isoformat()})")


def _not_closed(incident: IncidentRecord, action: str) -> None:
    if incident.state is IncidentState.CLOSED:
        closed = incident.closed_at.isoformat() if incident.closed_at else "?"
        raise IncidentStateError(f"incident {incident.incident_id}: closed at {closed}; closed is final, cannot "
                                 f"{action} (a recurrence opens a new incident)")


def _append(incident: IncidentRecord, entry: IncidentUpdate) -> tuple[IncidentUpdate, ...]:
    if len(incident.updates) >= MAX_UPDATES:
        raise IncidentStateError(f"incident {incident.incident_id}: already {MAX_UPDATES} updates; open a new "
                                 "incident that supersedes it")
    return (*incident.updates, entry)


def acknowledge(incident: IncidentRecord, *, actor: str, now: datetime) -> IncidentRecord | None:
    """open -> acknowledged. Returns None when already acknowledged by ``actor`` (a re-run).

    Raises:
        IncidentStateError: closed, or acknowledged by someone else.
        InputError: ``now`` before the opening.
    """
    when = _utc(now, "--at")
    _not_closed(incident, "acknowledge")
    if incident.state is IncidentState.ACKNOWLEDGED:
        if incident.acknowledged_by == actor:
            return None
        acked = incident.acknowledged_at.isoformat() if incident.acknowledged_at else "?"
        raise IncidentStateError(f"incident {incident.incident_id}: already acknowledged by "
                                 f"{incident.acknowledged_by} at {acked}")
    _not_before_open(incident, when, "--at")
    return incident.model_copy(update={
        "state": IncidentState.ACKNOWLEDGED, "acknowledged_at": when, "acknowledged_by": actor,
        "updates": _append(incident, IncidentUpdate(at=when, actor=actor, action="ack"))})


def update(incident: IncidentRecord, *, actor: str, now: datetime, note: str | None,
           disclosure: dict[DisclosureField, datetime]) -> IncidentRecord:
    """A note and/or disclosure dates (any state but closed). A disclosure date may not precede
    the opening day nor lie after ``now`` (dates record what happened). Overwriting a date is
    allowed (corrections) and the previous value is kept in the history entry.

    Raises:
        IncidentStateError: closed.
        InputError: nothing to record, a date out of bounds (naming the field).
    """
    when = _utc(now, "--at")
    _not_closed(incident, "update")
    if not note and not disclosure:
        raise InputError("update: expected --note and/or --disclosure FIELD=DATE, found neither")
    _not_before_open(incident, when, "--at")
    changes: dict[str, datetime] = {}
    previous: dict[str, datetime | None] = {}
    for name, value in sorted(disclosure.items()):
        value = _utc(value, f"--disclosure {name.value}")
        if value.date() < incident.opened_at.date():
            raise InputError(f"--disclosure {name.value}: {value.date().isoformat()} is before the incident was "
                             f"opened ({incident.opened_at.date().isoformat()})")
        if value > when:
            raise InputError(f"--disclosure {name.value}: {value.isoformat()} is after --at {when.isoformat()}; "
                             "record dates once they happened")
        changes[name.value] = value
        previous[name.value] = incident.disclosure_timeline.get(name)
    timeline = incident.disclosure_timeline.model_copy(update=changes)
    entry = IncidentUpdate(at=when, actor=actor, action="update", note=note or None, disclosure=changes,
                           previous_disclosure=previous)
    return incident.model_copy(update={"disclosure_timeline": timeline, "updates": _append(incident, entry)})


def close(incident: IncidentRecord, *, actor: str, now: datetime, resolution: str) -> IncidentRecord:
    """acknowledged -> closed (final).

    Raises:
        IncidentStateError: still open (acknowledge first) or already closed.
        InputError: empty resolution, ``now`` before the acknowledgement.
    """
    when = _utc(now, "--at")
    _not_closed(incident, "close")
    if not resolution.strip():
        raise InputError("--resolution: expected a non-empty text")
    if incident.state is IncidentState.OPEN or incident.acknowledged_at is None:
        raise IncidentStateError(f"incident {incident.incident_id}: still open; acknowledge it first "
                                 "(`ringward incident ack`), which records the first action")
    if when < incident.acknowledged_at:
        raise InputError(f"--at: {when.isoformat()} is before the acknowledgement "
                         f"({incident.acknowledged_at.isoformat()})")
    return incident.model_copy(update={
        "state": IncidentState.CLOSED, "closed_at": when, "closed_by": actor, "resolution": resolution.strip(),
        "updates": _append(incident, IncidentUpdate(at=when, actor=actor, action="close", note=resolution.strip()))})


def parse_disclosure(pairs: list[str] | tuple[str, ...], *, option: str = "--disclosure"
                     ) -> dict[DisclosureField, datetime]:
    """``FIELD=DATE`` pairs; DATE is ``YYYY-MM-DD`` (midnight UTC) or an ISO-8601 time with offset.

    Raises:
        InputError: unknown field, bad date, the same field twice.
    """
    from datetime import date

    out: dict[DisclosureField, datetime] = {}
    fields = ", ".join(f.value for f in DisclosureField)
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not text:
            raise InputError(f"{option} {pair!r}: expected FIELD=DATE")
        try:
            field = DisclosureField(name)
        except ValueError:
            raise InputError(f"{option} {pair!r}: field must be one of {fields}, found {name!r}") from None
        if field in out:
            raise InputError(f"{option} {name}: given twice")
        try:
            if len(text) == 10:
                value = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{option} {name}: expected YYYY-MM-DD or an ISO-8601 time, found {text!r}") from None
        if value.tzinfo is None:
            raise InputError(f"{option} {name}: expected a time with a UTC offset, found {text!r}")
        out[field] = value.astimezone(UTC)
    return out
