"""ITSM and paging providers: Jira Cloud REST v3, ServiceNow Table API, PagerDuty Events v2.

Jira's and ServiceNow's create APIs have no idempotency key, so both search for the event before
creating (Jira: a per-event label found by JQL, the Alertmanager pattern; ServiceNow:
``correlation_id``). PagerDuty de-duplicates by ``dedup_key`` = the event id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import httpx

from connectors.interface import Lookup, Provider, Reply, dumps_body
from connectors.providers._common import basic, bearer_or_authorization, facts, iso, title_of
from connectors.secrets import ResolvedDestination
from ringward.core.common.redaction import excerpt
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent, Severity


def _failed_search(response: httpx.Response, dest: ResolvedDestination) -> Lookup:
    shown = excerpt(response.text, limit=160, scrubber=dest.scrubber)  # scrubbed whole, then cut
    return Lookup(
        None,
        status_code=response.status_code,
        error=f"search before create: HTTP {response.status_code} {shown}",
        retry_after=response.headers.get("retry-after"),
    )


def _site(url: str, *suffixes: str) -> str:
    base = url.rstrip("/")
    for suffix in suffixes:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def jira_label(event_id: str) -> str:
    """The per-event label searched before creating (labels cannot hold spaces; keep it short)."""
    return "ringward-evt-" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:16]


def _adf_text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _adf_paragraph(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [_adf_text(text)]}


def adf_description(event: ConnectorEvent) -> dict[str, Any]:
    """Atlassian Document Format description (v3 requires ADF, not wiki markup)."""
    content: list[dict[str, Any]] = []
    if event.summary:
        content.append(_adf_paragraph(event.summary))
    items = [
        {
            "type": "listItem",
            "content": [
                {
                    "type": "paragraph",
                    "content": [
                        {"type": "text", "text": f"{label}: ", "marks": [{"type": "strong"}]},
                        _adf_text(value),
                    ],
                }
            ],
        }
        for label, value in facts(event)
    ]
    content.append({"type": "bulletList", "content": items})
    for link in event.links:
        content.append(
            {
                "type": "paragraph",
                "content": [
                    {
                        "type": "text",
                        "text": link.title,
                        "marks": [{"type": "link", "attrs": {"href": link.url}}],
                    }
                ],
            }
        )
    if event.attributes:
        content.append(
            {
                "type": "codeBlock",
                "attrs": {"language": "json"},
                "content": [_adf_text(json.dumps(event.attributes, indent=2, sort_keys=True)[:20000])],
            }
        )
    return {"type": "doc", "version": 1, "content": content}


class Jira(Provider):
    """``POST /rest/api/3/issue`` (201 ``{id, key, self}``) after ``POST /rest/api/3/search/jql``."""

    kind = ProviderKind.JIRA

    def _base(self, dest: ResolvedDestination) -> str:
        return _site(dest.url, "/rest/api/3/issue", "/rest/api/3")

    def url(self, dest: ResolvedDestination) -> str:
        return f"{self._base(dest)}/rest/api/3/issue"

    def labels(self, event: ConnectorEvent, dest: ResolvedDestination) -> list[str]:
        labels = ["ringward", *dest.config.labels, jira_label(event.event_id)]
        return list(dict.fromkeys(label.replace(" ", "-") for label in labels))

    def payload(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        fields: dict[str, Any] = {
            "project": {"key": dest.config.project_key},
            "issuetype": {"name": dest.config.issue_type},
            "summary": title_of(event, dest)[:255],
            "description": adf_description(event),
            "labels": self.labels(event, dest),
        }
        if dest.config.priority:
            fields["priority"] = {"name": dest.config.priority}
        return {"fields": fields}

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0], dest))

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        if dest.config.email and "api_token" in dest.secrets:
            return basic(dest.config.email, dest.secrets["api_token"])
        return bearer_or_authorization(dest)

    def find_existing(
        self,
        event: ConnectorEvent,
        dest: ResolvedDestination,
        client: httpx.Client,
        auth: dict[str, str],
        timeout: float,
    ) -> Lookup | None:
        jql = f'project = "{dest.config.project_key}" AND labels = "{jira_label(event.event_id)}"'
        response = client.post(
            f"{self._base(dest)}/rest/api/3/search/jql",
            content=dumps_body({"jql": jql, "fields": ["key"], "maxResults": 1}),
            headers={"content-type": "application/json", "accept": "application/json", **auth},
            timeout=timeout,
        )
        if response.status_code != 200:
            return _failed_search(response, dest)
        try:
            issues = response.json().get("issues") or []
        except (ValueError, AttributeError):
            return Lookup(None, status_code=502, error="search before create: response is not JSON")
        if issues and isinstance(issues[0], dict) and issues[0].get("key"):
            return Lookup(str(issues[0]["key"]))
        return Lookup(None)

    def interpret(self, status: int, text: str) -> Reply:
        if status == 201:
            try:
                return Reply(external_ref=str(json.loads(text)["key"]))
            except (ValueError, KeyError, TypeError):
                return Reply()
        if 400 <= status < 500 and text:
            return Reply(error=f"jira: {text}")  # the engine scrubs it whole, then cuts it
        return Reply()


_SN_IMPACT = {Severity.CRITICAL: "1", Severity.ERROR: "2", Severity.WARNING: "2", Severity.INFO: "3"}
_SN_URGENCY = {Severity.CRITICAL: "1", Severity.ERROR: "2", Severity.WARNING: "2", Severity.INFO: "3"}
_SAFE_CORRELATION = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def correlation_id(event_id: str) -> str:
    """ServiceNow ``correlation_id`` (<= 100 characters, no encoded-query metacharacters)."""
    if _SAFE_CORRELATION.match(event_id):
        return event_id
    return "ringward-" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:40]


class ServiceNow(Provider):
    """``POST /api/now/table/<table>`` (201 ``{"result": {sys_id, number}}``) after
    ``GET ...?sysparm_query=correlation_id=<id>``."""

    kind = ProviderKind.SERVICENOW

    def _base(self, dest: ResolvedDestination) -> str:
        return _site(dest.url, f"/api/now/table/{dest.config.table}", "/api/now/table", "/api/now")

    def url(self, dest: ResolvedDestination) -> str:
        return f"{self._base(dest)}/api/now/table/{dest.config.table}"

    def payload(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        lines = [event.summary] if event.summary else []
        lines += [f"{label}: {value}" for label, value in facts(event)]
        lines += [f"{link.title}: {link.url}" for link in event.links]
        record: dict[str, Any] = {
            "short_description": title_of(event, dest)[:160],
            "description": "\n".join(lines),
            "category": dest.config.category,
            "impact": _SN_IMPACT[event.severity],
            "urgency": _SN_URGENCY[event.severity],
            "correlation_id": correlation_id(event.event_id),
            "correlation_display": "Ringward",
        }
        if dest.config.assignment_group:
            record["assignment_group"] = dest.config.assignment_group
        if dest.config.caller_id:
            record["caller_id"] = dest.config.caller_id
        return record

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0], dest))

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        if dest.config.username and "password" in dest.secrets:
            return basic(dest.config.username, dest.secrets["password"])
        return bearer_or_authorization(dest)

    def find_existing(
        self,
        event: ConnectorEvent,
        dest: ResolvedDestination,
        client: httpx.Client,
        auth: dict[str, str],
        timeout: float,
    ) -> Lookup | None:
        response = client.get(
            self.url(dest),
            params={
                "sysparm_query": f"correlation_id={correlation_id(event.event_id)}",
                "sysparm_fields": "sys_id,number",
                "sysparm_limit": "1",
            },
            headers={"accept": "application/json", **auth},
            timeout=timeout,
        )
        if response.status_code != 200:
            return _failed_search(response, dest)
        try:
            rows = response.json().get("result") or []
        except (ValueError, AttributeError):
            return Lookup(None, status_code=502, error="search before create: response is not JSON")
        if rows and isinstance(rows[0], dict):
            return Lookup(str(rows[0].get("number") or rows[0].get("sys_id") or "existing"))
        return Lookup(None)

    def interpret(self, status: int, text: str) -> Reply:
        if status == 201:
            try:
                result = json.loads(text)["result"]
                return Reply(external_ref=str(result.get("number") or result.get("sys_id")))
            except (ValueError, KeyError, TypeError, AttributeError):
                return Reply()
        return Reply()


_PD_SEVERITY = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "critical",
}


class PagerDuty(Provider):
    """Events API v2 ``trigger`` with ``dedup_key`` = event id; 202 ``{status, message, dedup_key}``."""

    kind = ProviderKind.PAGERDUTY

    def payload(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return {**verbatim, "routing_key": dest.secrets.get("routing_key", "")}
        details: dict[str, Any] = {label: value for label, value in facts(event)}
        if event.summary:
            details["Summary"] = event.summary
        body: dict[str, Any] = {
            "routing_key": dest.secrets.get("routing_key", ""),
            "event_action": "trigger",
            "dedup_key": event.event_id[:255],
            "payload": {
                "summary": title_of(event, dest)[:1024],
                "source": event.deployment_target or event.source,
                "severity": _PD_SEVERITY[event.severity],
                "timestamp": iso(event.created_at),
                "class": event.event_type,
                "custom_details": details,
            },
            "client": "Ringward",
        }
        if event.release_version:
            body["payload"]["component"] = event.release_version
        if event.channel:
            body["payload"]["group"] = event.channel
        if event.links:
            body["links"] = [{"href": link.url, "text": link.title} for link in event.links]
        return body

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0], dest))

    def interpret(self, status: int, text: str) -> Reply:
        if 200 <= status < 300:
            try:
                return Reply(external_ref=str(json.loads(text).get("dedup_key") or "") or None)
            except (ValueError, AttributeError):
                return Reply()
        if status == 400 and text:
            return Reply(error=f"pagerduty: {text}")  # the engine scrubs it whole, then cuts it
        return Reply()
