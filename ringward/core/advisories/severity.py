"""CVSS v4.0 vectors (scored with the maintained ``cvss`` library) and the playbook's severity rule.

The rule (incident-response playbook): severity is assessed by reach into the threat model, CVSS is
recorded beside it, and a user-safety bug -- identity leak across contexts, duress detectability,
panic-wipe defeat, any phone-home -- is **always Critical whatever the score**. The assessment
records the declared severity, the vector's score and rating, the user-safety classes and the
effective severity with the reason, so an auditor sees why an advisory is Critical.

``cvss`` accepts metrics out of their canonical order, which OSV and some consumers reject; the
order is checked with the CVSS_V4 pattern of the vendored OSV schema (not a hand-written regex).
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from typing import Final

from cvss import CVSS4
from cvss.exceptions import CVSSError
from pydantic import BaseModel, ConfigDict, Field

from ringward.core.advisories.validation import SchemaName, schema_document
from ringward.core.errors import InputError

MAX_VECTOR_CHARS: Final = 512


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class UserSafetyClass(StrEnum):
    """The playbook's user-safety class: any of these makes the advisory Critical."""

    IDENTITY_LEAK = "identity-leak"
    DURESS_DETECTABILITY = "duress-detectability"
    PANIC_WIPE_DEFEAT = "panic-wipe-defeat"
    PHONE_HOME = "phone-home"


#: the playbook's first-action SLA per severity (recorded with the assessment)
FIRST_ACTION_SLA_HOURS: Final = {Severity.CRITICAL: 4, Severity.HIGH: 24, Severity.MEDIUM: 72, Severity.LOW: 168}

USER_SAFETY_RULE: Final = "user-safety class is always critical regardless of CVSS (incident-response playbook)"
DECLARED_RULE: Final = "declared severity (scored by reach into the threat model; CVSS recorded beside it)"


class CvssScore(BaseModel):
    """A validated CVSS v4.0 vector and what the ``cvss`` library computed from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vector: str = Field(min_length=1, max_length=MAX_VECTOR_CHARS)
    version: str = "4.0"
    base_score: float = Field(ge=0.0, le=10.0)
    #: the qualitative rating of the score: None, Low, Medium, High, Critical
    rating: str
    library: str = "cvss"


class SeverityAssessment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    declared: Severity
    cvss: CvssScore
    user_safety_classes: tuple[UserSafetyClass, ...] = ()
    effective: Severity
    rule: str
    first_action_sla_hours: int
    notes: tuple[str, ...] = ()


@cache
def _canonical_v4_pattern() -> re.Pattern[str]:
    severity = schema_document(SchemaName.OSV)["$defs"]["severity"]["items"]["allOf"]
    for branch in severity:
        if branch["if"]["properties"]["type"].get("const") == "CVSS_V4":
            return re.compile(branch["then"]["properties"]["score"]["pattern"])
    raise AssertionError("vendored OSV schema lacks the CVSS_V4 pattern")  # pragma: no cover


def score_cvss4(vector: str, *, option: str = "--cvss") -> CvssScore:
    """Validate and score a CVSS v4.0 vector.

    Raises:
        InputError: not a CVSS v4.0 vector, a missing/duplicate/unknown metric or value, or
            metrics out of the specification's canonical order.
    """
    if not isinstance(vector, str) or not vector or len(vector) > MAX_VECTOR_CHARS:
        raise InputError(f"{option}: expected a CVSS:4.0/... vector of 1..{MAX_VECTOR_CHARS} characters")
    if vector != vector.strip():
        raise InputError(f"{option}: vector has leading or trailing whitespace")
    if not vector.startswith("CVSS:4.0/"):
        raise InputError(f"{option}: expected a vector starting with 'CVSS:4.0/', found {vector[:16]!r}")
    try:
        parsed = CVSS4(vector)
    except CVSSError as exc:
        raise InputError(f"{option}: invalid CVSS v4.0 vector: {exc}") from exc
    if not _canonical_v4_pattern().match(vector):
        raise InputError(
            f"{option}: CVSS v4.0 metrics must appear in the specification's order "
            f"(canonical: {parsed.clean_vector()})"
        )
    return CvssScore(vector=vector, base_score=float(parsed.base_score), rating=str(parsed.severity))


def assess_severity(
    declared: Severity, vector: str, user_safety: tuple[UserSafetyClass, ...] = (), *, option: str = "--cvss"
) -> SeverityAssessment:
    """Apply the playbook's rule; record the score, the classes, the outcome and why."""
    score = score_cvss4(vector, option=option)
    classes = tuple(dict.fromkeys(user_safety))
    notes: list[str] = []
    rating = score.rating.lower()
    if rating in {s.value for s in Severity} and Severity(rating).rank > declared.rank:
        notes.append(f"declared {declared.value} is below the CVSS rating {rating} ({score.base_score})")
    elif rating in {s.value for s in Severity} and Severity(rating).rank < declared.rank:
        notes.append(f"declared {declared.value} is above the CVSS rating {rating} ({score.base_score}): "
                     "CVSS often understates reach into the threat model")
    if classes:
        effective, rule = Severity.CRITICAL, USER_SAFETY_RULE
        if declared is not Severity.CRITICAL:
            notes.append(f"raised from {declared.value} to critical: user-safety class "
                         + ", ".join(c.value for c in classes))
    else:
        effective, rule = declared, DECLARED_RULE
    return SeverityAssessment(
        declared=declared, cvss=score, user_safety_classes=classes, effective=effective, rule=rule,
        first_action_sla_hours=FIRST_ACTION_SLA_HOURS[effective], notes=tuple(notes),
    )


def parse_severity(value: str, *, option: str = "--severity") -> Severity:
    try:
        return Severity(value.strip().lower())
    except ValueError as exc:
        raise InputError(f"{option}: expected one of {', '.join(s.value for s in Severity)}, found {value!r}") from exc


def parse_user_safety(value: str, *, option: str = "--user-safety") -> UserSafetyClass:
    try:
        return UserSafetyClass(value.strip().lower())
    except ValueError as exc:
        raise InputError(
            f"{option}: expected one of {', '.join(c.value for c in UserSafetyClass)}, found {value!r}"
        ) from exc
