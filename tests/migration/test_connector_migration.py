"""The reference connector file (cavra-spec §7.2) -> Ringward destinations, entry by entry."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ringward.core.delivery.config import validate_connector_config
from ringward.core.errors import ConnectorConfigError
from ringward.core.migration.connectors import migrate_connectors, render_connectors_yaml


def _migrate(document: Any) -> Any:
    return migrate_connectors(document, source="connectors.json")


def _lines(migration: Any) -> list[str]:
    return [p.line() for p in migration.problems]


@pytest.mark.parametrize(
    "document",
    [
        {"connectors": {"splunk": {"url": "https://s.example.com/x", "token_env": "T"}}},
        {"providers": {"splunk": {"url": "https://s.example.com/x", "token_env": "T"}}},
        {"splunk": {"url": "https://s.example.com/x", "token_env": "T"}},
    ],
    ids=["connectors", "providers", "bare"],
)
def test_every_root_shape_of_the_reference_loader(document: dict[str, Any]) -> None:
    migration = _migrate(document)
    assert migration.problems == ()
    (dest,) = migration.destinations
    assert dest == {"name": "splunk", "provider": "splunk", "enabled": True, "method": "POST", "token": "env:T",
                    "url": "https://s.example.com/x"}


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ([], "connector config must be an object (expected an object, found list)"),
        ({"connectors": {}}, "connector config must contain connector objects"),
        ({"connectors": ["splunk"]}, "connector config must contain connector objects"),
    ],
)
def test_not_a_connector_file_is_refused_whole(document: Any, fragment: str) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        _migrate(document)
    assert fragment in caught.value.message and caught.value.message.startswith("connectors.json: ")


def test_each_bad_entry_is_reported_by_key_and_field_and_left_out() -> None:
    migration = _migrate(
        {
            "connectors": {
                "splunk": {"url": "https://s.example.com/x", "token_env": "not a name!"},
                "datadog": {"url": "https://d.example.com/x", "api_key_env": "DD", "method": "DELETE",
                            "enabled": "yes"},
                "jenkins": {"url": "https://ci.example.com/job", "token_env": "J"},
                "pagerduty": {"routing_key_env": "PD"},
                "teams": {"url": 42},
                "servicenow": {"url": "https://sn.example.com/api", "token": 12345},
                "sentinel": {"url": "https://x.ods.opinsights.azure.com/api/logs", "token_env": "S"},
                "Slack": {"url_env": "SLACK_URL"},
                "slack": {"url_env": "SLACK_URL_2"},
            }
        }
    )
    lines = _lines(migration)
    assert lines == [
        "connectors.json connectors.splunk.token_env: expected the name of an environment variable, "
        "found 'not a name!'",
        "connectors.json connectors.datadog.enabled: expected true or false, found 'yes'",
        "connectors.json connectors.datadog.method: expected POST or PUT, found 'DELETE'",
        "connectors.json connectors.jenkins: expected a delivery destination Ringward has (datadog, intune, jamf, "
        "jira, linux, sentinel, servicenow, slack, splunk, teams, webhook), found 'jenkins', a CI trigger "
        "(trigger CI from a webhook destination or a Prefect automation instead)",
        "connectors.json connectors.pagerduty: expected a reference provider (datadog, intune, jamf, jira, linux, "
        "sentinel, servicenow, slack, splunk, teams, webhook), found 'pagerduty'",
        "connectors.json connectors.teams.url: expected a URL, found 42",
        "connectors.json connectors.servicenow.token: expected a secret string, found int",
        "connectors.json connectors.sentinel.dcr_immutable_id: expected a value Ringward needs (required for "
        "sentinel (dcr-<32 hex>)), found nothing in the reference entry",
        "connectors.json connectors.sentinel.stream_name: expected a value Ringward needs (required for sentinel "
        "(Custom-<Table>_CL)), found nothing in the reference entry",
        "connectors.json connectors.slack: expected one entry per provider, found a second 'slack' entry",
    ]
    assert [d["name"] for d in migration.destinations] == ["slack"]
    assert migration.entries == 9


def test_secrets_in_clear_become_references_and_never_reach_the_output() -> None:
    document = {
        "connectors": {
            "jira": {"url": "https://alice:pa55word@jira.example.com/rest/api/2/issue", "authorization": "Basic abc=="},
            "webhook": {"url": "https://hook.example.com/in", "headers": {"Cookie": "session=s3cr3t", "X-Team": "rel"},
                        "api_key": "k-in-clear", "api_key_header": "x-hook-key", "ref": "main", "colour": "red"},
        }
    }
    migration = _migrate(document)
    # jira still needs a project key the reference never had: reported, not invented
    assert [p.field for p in migration.problems] == ["project_key"]
    (webhook,) = migration.destinations
    assert webhook["headers"] == {"cookie": "env:RINGWARD_WEBHOOK_HEADER_COOKIE", "x-team": "rel"}
    assert webhook["api_key"] == "env:RINGWARD_WEBHOOK_API_KEY" and webhook["api_key_header"] == "x-hook-key"
    assert webhook["signing_secret"] == "env:RINGWARD_WEBHOOK_SIGNING_SECRET"
    assert migration.notes == (
        "connectors.json connectors.webhook.ref: not migrated (a CI-trigger field; webhook ignores it)",
        "connectors.json connectors.webhook.colour: not migrated (the reference's loader does not read it)",
    )
    text = render_connectors_yaml(migration, source="connectors.json", source_sha256="0" * 64)
    assert text is not None
    for secret in ("pa55word", "Basic abc==", "s3cr3t", "k-in-clear"):
        assert secret not in text.decode()
        assert all(secret not in r.reference and secret not in r.note for r in migration.references)
    assert "#   RINGWARD_WEBHOOK_API_KEY: webhook.api_key  (was in clear in the reference file: NOT copied)" in (
        text.decode()
    )
    validate_connector_config(yaml.safe_load(text), source="out")

    credentials_url = _migrate({"linux": {"url": "https://bob:pw@fleet.example.com/hook"}})
    (linux,) = credentials_url.destinations
    assert linux["url"] == "env:RINGWARD_LINUX_URL"
    (ref,) = credentials_url.references
    assert ref.literal_in_source and "carries credentials" in ref.note


def test_jamf_and_intune_post_the_reference_envelope_to_a_relay() -> None:
    migration = _migrate({"jamf": {"url": "https://relay.example.com/jamf"}, "intune": {"url_env": "INTUNE_RELAY"}})
    assert migration.problems == ()
    assert [(d["name"], d["mode"]) for d in migration.destinations] == [("jamf", "relay"), ("intune", "relay")]


def test_nothing_migratable_writes_no_file() -> None:
    migration = _migrate({"github": {"url": "https://api.github.com/x", "token_env": "GH"}})
    assert migration.destinations == () and migration.document() is None
    assert render_connectors_yaml(migration, source="c.json", source_sha256="0" * 64) is None
