"""Connector configuration: the whole file is validated and every problem named by its path."""

from __future__ import annotations

import json

import pytest

from ringward.core.delivery.config import (
    ProviderKind,
    SecretRef,
    parse_connector_config,
    validate_connector_config,
)
from ringward.core.errors import ConnectorConfigError


def problems_of(document: object, source: str = "connectors.yaml") -> tuple[str, ...]:
    with pytest.raises(ConnectorConfigError) as info:
        validate_connector_config(document, source=source)
    return info.value.problems


def test_every_problem_is_reported_with_its_path() -> None:
    problems = problems_of(
        {
            "providers": [
                {
                    "name": "soc",
                    "provider": "splunk",
                    "url": "https://splunk.example.com/services/collector/event",
                    "token": "env:HEC",
                },
                {
                    "name": "dd",
                    "provider": "datadog",
                    "url": "https://http-intake.logs.datadoghq.eu/api/v2/logs",
                    "api_key": "0123456789abcdef",
                },
                {
                    "name": "hook",
                    "provider": "webhook",
                    "url": "http://hooks.example.com/in",
                    "signing_secret": "env:W",
                },
                {"name": "chat", "provider": "slack", "url": "https://hooks.slack.com/services/T/B/X"},
                {"name": "jira", "provider": "jira", "url": "https://acme.atlassian.net", "email": "a@b.c"},
                {"name": "bad", "provider": "nope", "url": "https://x.example.com"},
                {"name": "extra", "provider": "teams", "url": "env:TEAMS", "colour": "red"},
            ]
        }
    )
    assert problems == (
        "providers[1].api_key: must be a secret reference env:NAME or prefect-secret:NAME "
        "(secrets are never inline)",
        "providers[2].url: not an https URL (plain http is allowed only for loopback hosts)",
        "providers[3].url: a slack webhook URL is a credential; "
        "reference it as env:NAME or prefect-secret:NAME",
        "providers[4].email: jira needs credentials: email+api_token or token or authorization",
        "providers[4].project_key: required for jira",
        "providers[5].provider: Input should be 'splunk', 'sentinel', 'datadog', 'webhook', 'slack', "
        "'teams', 'jira', 'servicenow', 'pagerduty', 'jamf', 'intune', 'linux' or 'private_queue'",
        "providers[6].colour: unknown field",
    )


def test_the_message_is_one_line_and_counts_problems() -> None:
    with pytest.raises(ConnectorConfigError) as info:
        parse_connector_config(
            b'{"providers": [{"name": "a", "provider": "splunk", "url": "ftp://x"}]}', source="c.json"
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("c.json: 2 problems: providers[0].url: not an https URL")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8088/services/collector/event", "http://localhost:9/x", "http://[::1]:80/x"],
)
def test_plain_http_is_allowed_for_loopback_only(url: str) -> None:
    config = validate_connector_config(
        {"providers": [{"name": "s", "provider": "splunk", "url": url, "token": "env:T"}]}, source="c"
    )
    assert config.providers[0].url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:pass@jira.example.com", "credentials in the URL are inline secrets"),
        ("https://x.example.com/in?sig=abc", "query parameter 'sig' looks like a credential"),
        ("https://x.example.com/in?api_key=abc", "query parameter 'api_key' looks like a credential"),
        ("https://x.example.com/in#frag", "must not have a fragment"),
        ("http://10.0.0.5/in", "not an https URL"),
    ],
)
def test_unsafe_urls_are_refused(url: str, message: str) -> None:
    (problem,) = problems_of(
        {"providers": [{"name": "w", "provider": "webhook", "url": url, "signing_secret": "env:S"}]}
    )
    assert problem.startswith("providers[0].url: ")
    assert message in problem


def test_credential_headers_need_secret_references() -> None:
    (problem,) = problems_of(
        {
            "providers": [
                {
                    "name": "l",
                    "provider": "linux",
                    "url": "https://fleet.example.com/p",
                    "headers": {"X-Auth-Token": "plaintext"},
                }
            ]
        }
    )
    assert problem == (
        "providers[0].headers: Value error, header 'X-Auth-Token' carries a credential; "
        "its value must be env:NAME or prefect-secret:NAME"
    ).replace("Value error, ", "")
    ok = validate_connector_config(
        {
            "providers": [
                {
                    "name": "l",
                    "provider": "linux",
                    "url": "https://fleet.example.com/p",
                    "headers": {"X-Auth-Token": "env:TOKEN", "X-Team": "release"},
                }
            ]
        },
        source="c",
    )
    assert ok.providers[0].headers == {"x-auth-token": "env:TOKEN", "x-team": "release"}


def test_reference_shape_is_accepted_and_paths_follow_it() -> None:
    config = validate_connector_config(
        {
            "connectors": {
                "splunk": {"url_env": "SPLUNK_URL", "token_env": "SPLUNK_TOKEN", "index": "audit"},
                "teams": {"url_env": "TEAMS_URL", "enabled": False},
                "datadog": {"url": "https://http-intake.logs.datadoghq.com/api/v2/logs", "api_key_env": "DD"},
            }
        },
        source="connectors.json",
    )
    splunk, teams, datadog = config.providers
    assert (splunk.name, splunk.provider, splunk.url, splunk.token) == (
        "splunk",
        ProviderKind.SPLUNK,
        SecretRef("env", "SPLUNK_URL"),
        SecretRef("env", "SPLUNK_TOKEN"),
    )
    assert teams.enabled is False
    assert datadog.api_key == SecretRef("env", "DD")
    assert [d.name for d in config.select("all")] == ["splunk", "datadog"]

    problems = problems_of(
        {"connectors": {"splunk": {"url": "http://splunk.example.com", "token": "raw-token"}}}
    )
    assert problems == (
        "connectors.splunk.url: not an https URL (plain http is allowed only for loopback hosts)",
        "connectors.splunk.token: must be a secret reference env:NAME or prefect-secret:NAME "
        "(secrets are never inline)",
    )


def test_names_are_unique_and_selection_reports_unknown_providers() -> None:
    provider = {"provider": "webhook", "url": "https://a.example.com/x", "signing_secret": "env:S"}
    problems = problems_of({"providers": [{**provider, "name": "a"}, {**provider, "name": "a"}]})
    assert problems == ("providers[1].name: duplicate destination name 'a' (also providers[0])",)
    config = validate_connector_config(
        {"providers": [{**provider, "name": "a"}, {**provider, "name": "b", "enabled": False}]}, source="c"
    )
    assert [d.name for d in config.select("webhook")] == ["a"]
    with pytest.raises(ConnectorConfigError, match="not configured or is disabled: b"):
        config.select("a,b")
    with pytest.raises(ConnectorConfigError, match="not configured or is disabled: splunk"):
        config.select("splunk")


def test_yaml_duplicate_keys_and_garbage_are_refused() -> None:
    with pytest.raises(ConnectorConfigError, match="duplicate key 'url'"):
        parse_connector_config(
            b"providers:\n  - name: a\n    provider: webhook\n    url: https://a/x\n    url: https://b/y\n",
            source="c.yaml",
        )
    with pytest.raises(ConnectorConfigError, match="invalid YAML"):
        parse_connector_config(b"providers: [\n", source="c.yaml")
    with pytest.raises(ConnectorConfigError, match="duplicate key"):
        parse_connector_config(b'{"providers": [], "providers": []}', source="c.json")
    assert problems_of([1, 2]) == ("<root>: connector config must be an object",)


def test_provider_specific_requirements() -> None:
    problems = problems_of(
        {
            "providers": [
                {
                    "name": "s",
                    "provider": "sentinel",
                    "url": "https://dce.example.ingest.monitor.azure.com",
                    "token": "env:T",
                },
                {"name": "q", "provider": "private_queue"},
                {
                    "name": "i",
                    "provider": "intune",
                    "url": "https://graph.microsoft.com/beta/x",
                    "client_id": "c",
                },
                {"name": "pd", "provider": "pagerduty"},
            ]
        }
    )
    assert problems == (
        "providers[0].dcr_immutable_id: required for sentinel (dcr-<32 hex>)",
        "providers[0].stream_name: required for sentinel (Custom-<Table>_CL)",
        "providers[1].url: private_queue needs exactly one of url or directory",
        "providers[2].client_secret: required with client_id",
        "providers[2].tenant_id: required with client_id (or set token_url)",
        "providers[3].routing_key: pagerduty needs credentials: routing_key",
    )


def test_policy_defaults_and_overrides() -> None:
    config = validate_connector_config(
        {
            "defaults": {"timeout_seconds": 5, "max_attempts": 3},
            "providers": [
                {
                    "name": "a",
                    "provider": "webhook",
                    "url": "https://a.example.com/x",
                    "signing_secret": "env:S",
                    "max_attempts": 7,
                    "budget_seconds": 20,
                },
            ],
        },
        source="c",
    )
    policy = config.providers[0].policy(config.default_policy())
    assert (policy.timeout_seconds, policy.max_attempts, policy.budget_seconds) == (5, 7, 20)
    dumped = json.loads(json.dumps(config.model_dump(mode="json")))
    assert dumped["providers"][0]["signing_secret"] == "env:S"


def test_the_example_config_is_valid() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "connectors.yaml"
    config = parse_connector_config(example.read_bytes(), source=example.name)
    assert {d.provider for d in config.providers} == set(ProviderKind)
