"""The routing policy file: the §9.6 shape and aliases, Alertmanager route semantics, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringward.core.errors import ConfigError
from ringward.core.sla.engine import route_alerts
from ringward.core.sla.policy import Matcher, parse_duration, parse_policy
from ringward.core.sla.report import build_report
from tests.sla.factory import T0, handoff, policy_of, status


def test_reference_shape_and_aliases_are_read() -> None:
    policy = parse_policy(
        b"""
notification_routing:
  - name: breached
    alert_levels: [critical]
    providers: [jira-main]
    owner: endpoint-ops
    ack_required: false
    suppression_window_minutes: 30
default_providers: [slack-ops]
owner: governance
suppression_window_minutes: 90
""",
        source="routing.yaml",
    )
    route = policy.routes["breached"]
    assert (route.owner, route.receivers, route.acknowledgement_required) == ("endpoint-ops", ("jira-main",), False)
    assert route.repeat_interval == timedelta(minutes=30)
    assert policy.routes["default"].repeat_interval == timedelta(minutes=90)
    assert policy.routes["default"].owner == "governance"
    assert policy.routes["default"].group_wait == timedelta(seconds=30)  # Alertmanager default


def _report(*specs: tuple[str, str]) -> object:
    hs, statuses = [], []
    for n, (channel, state) in enumerate(specs):
        h = handoff(n, channel=channel, created_at=T0)
        hs.append(h)
        if state != "age":
            statuses.append(status(h, state, T0 + timedelta(hours=1)))
    return build_report(hs, statuses, now=T0 + timedelta(hours=30))


def test_first_matching_route_wins_unless_continue() -> None:
    doc = {
        "rules": [
            {"rule_id": "stable-critical", "channels": ["stable"], "alert_levels": ["critical"]},
            {"rule_id": "stable-any", "channels": ["stable"], "continue": True},
            {"rule_id": "everything"},
        ]
    }
    report = _report(("stable", "blocked"), ("stable", "age"), ("beta", "age"))
    routed = route_alerts(report, policy_of(doc))  # type: ignore[arg-type]
    assert {k: len(v) for k, v in routed.items()} == {"stable-critical": 1, "stable-any": 1, "everything": 2}


def test_report_level_conditions_and_default_route() -> None:
    doc = {"rules": [{"rule_id": "many", "min_breached": 2}]}
    report = _report(("stable", "blocked"), ("beta", "age"))
    routed = route_alerts(report, policy_of(doc))  # type: ignore[arg-type]
    assert set(routed) == {"default"} and len(routed["default"]) == 2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rules": [{"rule_id": "a"}, {"rule_id": "a"}]}, "rule_id must be unique"),
        ({"rules": [{"rule_id": "default"}]}, "not 'default'"),
        ({"rules": [{"rule_id": "a", "escalation_policy": "nope"}]}, "escalation_policy 'nope' is not defined"),
        ({"group_interval": "5 minutes"}, "group_interval: expected a duration"),
        ({"rules": [{"rule_id": "a", "alert_levels": ["urgent"]}]}, "rules.0.alert_levels.0"),
        (
            {
                "escalation_policies": {
                    "p": {
                        "rungs": [
                            {"level": "a", "after": "1h", "targets": [{"receiver": "x"}]},
                            {"level": "b", "after": "30m", "targets": [{"receiver": "y"}]},
                        ]
                    }
                }
            },
            "after must strictly increase",
        ),
        (
            {"escalation_policies": {"p": {"rungs": [{"level": "a", "targets": [{"owner": "ghost"}]}]}}},
            "target owner 'ghost' is not in owners",
        ),
        (
            {"escalation_policies": {"p": {"rungs": [{"level": "a", "targets": [{"owner": "x", "receiver": "y"}]}]}}},
            "exactly one of owner or receiver",
        ),
        (
            {
                "maintenance_windows": [
                    {"name": "w", "rrule": "FREQ=DAILY", "start": "2026-01-01T01:00", "duration": "2h"}
                ]
            },
            "missing timezone",
        ),
        ({"unknown": 1}, "unknown: Extra inputs are not permitted"),
    ],
)
def test_invalid_policies_name_the_field(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_of(document)


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"routing\.yaml: expected a mapping"):
        parse_policy(b"- a\n- b\n", source="routing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_policy(b"rules: [\n", source="routing.yaml")


def test_durations_and_matchers() -> None:
    assert parse_duration("90") == timedelta(minutes=90)
    assert parse_duration("1h30m") == parse_duration("PT1H30M") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="up to 366 days"):
        parse_duration("400d")
    regex = Matcher(name="owner", value="endpoint-.*", is_regex=True)
    assert regex.matches({"owner": "endpoint-ops"}) and not regex.matches({"owner": "x-endpoint-ops"})
    assert Matcher(name="channel", value="", is_equal=True).matches({})  # a missing label is empty
    assert Matcher(name="channel", value="beta", is_equal=False).matches({"channel": "stable"})
    with pytest.raises(ValueError, match="not a regular expression"):
        Matcher(name="owner", value="(", is_regex=True)
