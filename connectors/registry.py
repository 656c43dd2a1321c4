"""The provider registry: an explicit mapping from :class:`ProviderKind` to its implementation."""

from __future__ import annotations

from functools import cache
from typing import assert_never

from connectors.interface import Provider
from connectors.providers.chatops import Slack, Teams
from connectors.providers.fleet import Intune, Jamf, LinuxFleet
from connectors.providers.itsm import Jira, PagerDuty, ServiceNow
from connectors.providers.siem import Datadog, Sentinel, SplunkHec
from connectors.providers.webhook import PrivateQueue, Webhook
from ringward.core.delivery.config import ProviderKind, PublishMode


@cache
def provider_for(kind: ProviderKind, mode: PublishMode = PublishMode.NATIVE) -> Provider:
    """The (stateless, shared) provider implementation for ``kind``.

    ``mode`` matters for Jamf Pro and Intune only: ``native`` talks to the tool's own API (Jamf Pro
    API / Classic API, Microsoft Graph), ``relay`` posts the reference system's publication envelope
    to an in-house receiver.
    """
    if mode is PublishMode.NATIVE and kind is ProviderKind.JAMF:
        from connectors.providers.jamf_pro import JamfPro

        return JamfPro()
    if mode is PublishMode.NATIVE and kind is ProviderKind.INTUNE:
        from connectors.providers.intune_graph import IntuneGraph

        return IntuneGraph()
    match kind:
        case ProviderKind.SPLUNK:
            return SplunkHec()
        case ProviderKind.SENTINEL:
            return Sentinel()
        case ProviderKind.DATADOG:
            return Datadog()
        case ProviderKind.WEBHOOK:
            return Webhook()
        case ProviderKind.SLACK:
            return Slack()
        case ProviderKind.TEAMS:
            return Teams()
        case ProviderKind.JIRA:
            return Jira()
        case ProviderKind.SERVICENOW:
            return ServiceNow()
        case ProviderKind.PAGERDUTY:
            return PagerDuty()
        case ProviderKind.JAMF:
            return Jamf()
        case ProviderKind.INTUNE:
            return Intune()
        case ProviderKind.LINUX:
            return LinuxFleet()
        case ProviderKind.PRIVATE_QUEUE:
            return PrivateQueue()
        case _:
            assert_never(kind)
