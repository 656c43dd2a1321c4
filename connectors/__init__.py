"""Outbound connectors: one normalised event, many providers, one delivery engine.

Public surface (everything else is an implementation detail):

- :class:`DeliveryEngine` / :class:`EngineReport` — deliver events concurrently,
  with retries, budgets and idempotency through a :class:`DeliveryLedger`.
- :class:`SecretResolver`, :func:`resolve_destinations` — turn configuration into ready destinations.
- :func:`provider_for` — the provider implementation of a :class:`ProviderKind`.
"""

from connectors.engine import DeliveryEngine, EngineReport, utc_now
from connectors.ledger import Completion, DeliveryLedger, MemoryLedger
from connectors.registry import provider_for
from connectors.secrets import ResolvedDestination, SecretResolver, resolve_destination, resolve_destinations

__all__ = [
    "Completion",
    "DeliveryEngine",
    "DeliveryLedger",
    "EngineReport",
    "MemoryLedger",
    "ResolvedDestination",
    "SecretResolver",
    "provider_for",
    "resolve_destination",
    "resolve_destinations",
    "utc_now",
]
