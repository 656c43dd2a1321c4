"""Inventory pulls: read Jamf Pro, Microsoft Graph (Intune) and Fleet inventories over their own APIs.

The delivery connectors (``connectors.providers``) push events out; this package pulls inventory in,
with the same connector configuration (``connectors.yaml``: a destination's ``url`` and secret
references, resolved at run time) and the same redaction (every resolved secret and every token is
registered with the run's :class:`~ringward.core.common.redaction.SecretScrubber`).

- :mod:`.sources`: which destination a pull reads (``jamf`` / ``intune`` in native mode, a ``linux``
  destination for Fleet) and its checked credentials.
- :mod:`.http`: one retrying HTTP client: network errors, 408/429/5xx retried with exponential
  backoff honouring ``Retry-After``; 401/403 and other 4xx are one-line configuration errors.
- :mod:`.auth`: bearer tokens (OAuth client credentials through the shared token cache, the Jamf Pro
  ``/api/v1/auth/token`` basic exchange, a static API token).
- :mod:`.jamf`, :mod:`.graph`, :mod:`.fleet`: the paged reads, one :class:`~.pages.Page` at a time,
  resumable from a JSON continuation (so a Prefect task can fetch a batch of pages and hand on).

Nothing here parses an inventory into observations: the pages' records go to the existing
normalisers (``ringward.core.inventory.normalise``) through ingestion.
"""

from connectors.inventory_pull.http import PullHttp, RetryPolicy
from connectors.inventory_pull.pages import Page, Pager
from connectors.inventory_pull.sources import (
    PULL_PROVIDERS,
    NoPullSourceError,
    PullSource,
    open_pager,
    resolve_pull_source,
    select_pull_source,
)

__all__ = [
    "PULL_PROVIDERS",
    "NoPullSourceError",
    "Page",
    "Pager",
    "PullHttp",
    "PullSource",
    "RetryPolicy",
    "open_pager",
    "resolve_pull_source",
    "select_pull_source",
]
