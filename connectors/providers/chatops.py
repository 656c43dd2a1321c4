"""ChatOps providers: Slack incoming webhooks (Block Kit) and Microsoft Teams Workflows webhooks
(Adaptive Card; the O365 connector MessageCard is retired).

Both webhook URLs are credentials: configuration must reference them as secrets, and evidence
records keep only scheme and host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.interface import Provider, Reply, dumps_body
from connectors.providers._common import facts, title_of
from connectors.secrets import ResolvedDestination
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent, Severity

_SLACK_EMOJI = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.ERROR: ":x:",
    Severity.CRITICAL: ":rotating_light:",
}


def _mrkdwn(text: str) -> str:
    """Slack mrkdwn escaping: only &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack(Provider):
    """``{"text": fallback, "blocks": [header, section, fields, context]}``; 200 ``ok``."""

    kind = ProviderKind.SLACK

    def payload(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        title = title_of(event, dest)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        ]
        if event.summary:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(event.summary[:3000])}}
            )
        fields = [
            {"type": "mrkdwn", "text": f"*{label}*\n{_mrkdwn(value)[:500]}"} for label, value in facts(event)
        ]
        blocks.append({"type": "section", "fields": fields[:10]})
        if event.links:
            links = " | ".join(f"<{link.url}|{_mrkdwn(link.title)}>" for link in event.links[:5])
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": links}})
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Ringward event `{_mrkdwn(event.event_id)}`"}],
            }
        )
        return {
            "text": f"{_SLACK_EMOJI[event.severity]} [{event.severity.value.upper()}] {_mrkdwn(title)}",
            "blocks": blocks,
        }

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0], dest))

    def interpret(self, status: int, text: str) -> Reply:
        # Slack answers 200 "ok"; errors carry a text code (invalid_payload, channel_is_archived...)
        if not 200 <= status < 300 and text.strip():
            return Reply(error=f"slack: {text.strip()}")  # the engine scrubs it whole, then cuts it
        return Reply()


_TEAMS_COLOR = {
    Severity.INFO: "Good",
    Severity.WARNING: "Warning",
    Severity.ERROR: "Attention",
    Severity.CRITICAL: "Attention",
}


class Teams(Provider):
    """Workflows ("Send webhook alerts to a channel") message with one Adaptive Card 1.2.

    A 2xx (usually 202) means the flow was triggered, not that the message was posted.
    """

    kind = ProviderKind.TEAMS

    def card(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        body: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": title_of(event, dest)[:250],
                "weight": "Bolder",
                "size": "Medium",
                "color": _TEAMS_COLOR[event.severity],
                "wrap": True,
            }
        ]
        if event.summary:
            body.append({"type": "TextBlock", "text": event.summary[:3000], "wrap": True})
        body.append(
            {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in facts(event)]}
        )
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.2",
            "body": body,
            "msteams": {"width": "Full"},
        }
        if event.links:
            card["actions"] = [
                {"type": "Action.OpenUrl", "title": link.title, "url": link.url} for link in event.links[:5]
            ]
        return card

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        event = events[0]
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return dumps_body(verbatim)
        return dumps_body(
            {
                "type": "message",
                "attachments": [
                    {
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": None,
                        "content": self.card(event, dest),
                    }
                ],
            }
        )

    def interpret(self, status: int, text: str) -> Reply:
        return Reply()


__all__ = ["Slack", "Teams"]
