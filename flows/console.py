"""``console-refresh``: the operator console (scheduled every 5 minutes).

Reads current state -- release verification per package, channel high-water marks and holds,
pending approvals, rollouts by ring, fleet drift, open SLA escalations, open incidents, connector
delivery health, the evidence chain's last verification -- and publishes one stable-key artifact
per page (``console-*``) plus ``ringward-overview`` linking them. An empty store publishes every
page with "Nothing yet" and the run is Completed; a page whose read failed is published as
unavailable and the run ends Failed naming it.
"""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow
from prefect.states import Completed, Failed

from flows._common import utc_now
from tasks.console import publish_console, read_console

__all__ = ["console_refresh_flow"]


@flow(name="console-refresh", log_prints=True)
def console_refresh_flow(at: datetime | None = None, limit: int = 200, scan_records: int = 2000) -> State:
    """Refresh every console page as of ``at`` (default now). ``limit``: rows per page (1..500);
    ``scan_records``: newest evidence records read per kind to find the latest per package/channel/scope."""
    console = read_console(at or utc_now(), limit, scan_records)
    keys = publish_console(console)
    data = {"generated_at": console.generated_at.isoformat(), "keys": keys,
            "levels": {p.name: p.level for p in console.pages}}
    attention = [p.name for p in console.pages if p.level == "attention"]
    unavailable = console.unavailable()
    if unavailable:
        return Failed(message=f"console: unavailable page(s): {', '.join(unavailable)}", data=data)
    return Completed(message=f"console refreshed; attention: {', '.join(attention) or 'none'}", data=data)
