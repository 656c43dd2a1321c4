"""CVSS v4 vectors (scored by the `cvss` library, canonical order from the vendored OSV schema)
and the playbook's severity rule."""

from __future__ import annotations

import pytest

from ringward.core.advisories.severity import (
    DECLARED_RULE,
    USER_SAFETY_RULE,
    Severity,
    UserSafetyClass,
    assess_severity,
    parse_severity,
    parse_user_safety,
    score_cvss4,
)
from ringward.core.errors import InputError
from tests.advisories.conftest import CVSS_CRITICAL, CVSS_LOW


def test_valid_vector_is_scored_by_the_library() -> None:
    score = score_cvss4(CVSS_CRITICAL)
    assert (score.base_score, score.rating, score.version, score.library) == (9.3, "Critical", "4.0", "cvss")
    low = score_cvss4(CVSS_LOW)
    assert low.rating == "Low" and 0 < low.base_score < 4


def test_threat_metric_lowers_the_score() -> None:
    assert score_cvss4(CVSS_CRITICAL + "/E:U").base_score < 9.3


@pytest.mark.parametrize(("vector", "expected"), [
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N", "Missing mandatory metrics \"SA\""),
    ("CVSS:4.0/AV:N/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "Duplicate metric \"AV\""),
    ("CVSS:4.0/AC:L/AV:N/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "specification's order"),
    ("CVSS:4.0/AV:X/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "invalid CVSS v4.0 vector"),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/ZZ:Q", "invalid CVSS v4.0 vector"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "starting with 'CVSS:4.0/'"),
    (" " + CVSS_CRITICAL, "whitespace"),
    ("", "expected a CVSS:4.0"),
    ("CVSS:4.0/" + "AV:N/" * 200, "expected a CVSS:4.0"),
])
def test_invalid_vectors_are_input_errors(vector: str, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        score_cvss4(vector)
    assert expected in caught.value.message
    assert caught.value.message.startswith("--cvss: ")


def test_user_safety_class_is_always_critical_whatever_the_score() -> None:
    assessed = assess_severity(Severity.LOW, CVSS_LOW, (UserSafetyClass.PHONE_HOME,))
    assert assessed.effective is Severity.CRITICAL
    assert assessed.rule == USER_SAFETY_RULE
    assert assessed.first_action_sla_hours == 4
    assert assessed.user_safety_classes == (UserSafetyClass.PHONE_HOME,)
    assert any("raised from low to critical" in n for n in assessed.notes)


def test_without_a_user_safety_class_the_declared_severity_stands_and_cvss_is_recorded() -> None:
    assessed = assess_severity(Severity.MEDIUM, CVSS_CRITICAL)
    assert assessed.effective is Severity.MEDIUM and assessed.rule == DECLARED_RULE
    assert assessed.cvss.base_score == 9.3
    assert assessed.first_action_sla_hours == 72
    assert any("below the CVSS rating critical" in n for n in assessed.notes)
    above = assess_severity(Severity.HIGH, CVSS_LOW)
    assert any("understates" in n for n in above.notes)


def test_duplicate_classes_are_recorded_once() -> None:
    assessed = assess_severity(Severity.CRITICAL, CVSS_CRITICAL,
                               (UserSafetyClass.IDENTITY_LEAK, UserSafetyClass.IDENTITY_LEAK))
    assert assessed.user_safety_classes == (UserSafetyClass.IDENTITY_LEAK,)
    assert not any("raised" in n for n in assessed.notes)


def test_severity_and_class_parsing() -> None:
    assert parse_severity(" High ") is Severity.HIGH
    assert parse_user_safety("panic-wipe-defeat") is UserSafetyClass.PANIC_WIPE_DEFEAT
    with pytest.raises(InputError, match="--severity: expected one of low, medium, high, critical"):
        parse_severity("severe")
    with pytest.raises(InputError, match="--user-safety: expected one of"):
        parse_user_safety("telemetry")
