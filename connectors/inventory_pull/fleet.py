"""Fleet ``GET /api/v1/fleet/hosts?populate_software=true``, paged.

Query: ``page`` (0-based), ``per_page``, ``populate_software=true`` (each host with its ``software[]``),
``order_key`` + ``order_direction=asc`` (``id`` for a full read). An incremental read orders by
``detail_updated_at`` -- a column of the hosts table, refreshed when the host's details and software
are -- and passes ``after=<time>`` (Fleet: "the value to get results after; needs order_key"), as
``YYYY-MM-DD HH:MM:SS`` UTC, the database's own form. Answer: ``{"hosts": [...]}``; a page shorter
than ``per_page`` (or ``meta.has_next_results: false``) is the last.
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.inventory_pull.auth import Auth
from connectors.inventory_pull.http import PullHttp
from connectors.inventory_pull.pages import Page, Pager, parse_document, parse_time
from ringward.core.errors import TransportError

HOSTS_PATH = "/api/v1/fleet/hosts"
MAX_PAGE_SIZE = 1000


class FleetPager(Pager):
    provider: ClassVar[str] = "fleet"
    records_key: ClassVar[str] = "hosts"
    clock_field: ClassVar[str] = "detail_updated_at"

    def __init__(self, http: PullHttp, auth: Auth, *, base_url: str, page_size: int, since: str | None) -> None:
        self.http, self.auth, self.url = http, auth, base_url + HOSTS_PATH
        self.page_size = page_size
        parsed = parse_time(since) if since is not None else None
        self.after = None if parsed is None else parsed.strftime("%Y-%m-%d %H:%M:%S")

    def first(self) -> dict[str, Any]:
        return {"page": 0}

    def fetch(self, continuation: dict[str, Any]) -> Page:
        page = continuation.get("page")
        if not isinstance(page, int) or isinstance(page, bool) or page < 0:
            raise TransportError(f"{self.http.label}: bad continuation {continuation!r}")
        params = [("page", str(page)), ("per_page", str(self.page_size)), ("populate_software", "true"),
                  ("order_key", "detail_updated_at" if self.after else "id"), ("order_direction", "asc")]
        if self.after is not None:
            params.append(("after", self.after))
        step = f"hosts page {page}"
        answer = self.http.send("GET", self.url, step=step, params=params, headers=self.auth.headers,
                                unauthorized=self.auth.unauthorized, hint="check the API token (token)")
        raw, document, scrubbed = parse_document(self.http, answer, step=step, key="hosts")
        hosts = document["hosts"]
        meta = document.get("meta")
        more = meta.get("has_next_results") if isinstance(meta, dict) else None
        done = len(hosts) < self.page_size or more is False
        return Page(url=answer.url, raw=raw, records=hosts, next=None if done else {"page": page + 1},
                    attempts=answer.attempts, scrubbed=scrubbed)
