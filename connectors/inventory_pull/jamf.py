"""Jamf Pro ``GET /api/v1/computers-inventory``, paged.

Query: ``section=GENERAL&section=APPLICATIONS&section=HARDWARE&section=OPERATING_SYSTEM`` (the
general clocks and extension attributes, the applications, and the OS and processor the deployment
target is derived from), ``page`` (0-based), ``page-size`` (at most 2000), ``sort=id:asc`` (a stable
order while paging) and, for an incremental pull, the RSQL ``filter=general.reportDate=ge="<time>"``
(``reportDate`` is Jamf's last-inventory clock; ``lastContactTime`` only says the device checked in).
Answer: ``{"totalCount": N, "results": [{"id", "udid", "general", "applications", "hardware",
"operatingSystem", ...}]}``; the last page is the one that reaches ``totalCount`` (or comes back empty).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from connectors.inventory_pull.auth import Auth
from connectors.inventory_pull.http import PullHttp
from connectors.inventory_pull.pages import Page, Pager, parse_document
from ringward.core.errors import TransportError

INVENTORY_PATH = "/api/v1/computers-inventory"
SECTIONS = ("GENERAL", "APPLICATIONS", "HARDWARE", "OPERATING_SYSTEM")
MAX_PAGE_SIZE = 2000


class JamfPager(Pager):
    provider: ClassVar[str] = "jamf"
    records_key: ClassVar[str] = "results"
    clock_field: ClassVar[str] = "general.reportDate"

    def __init__(self, http: PullHttp, auth: Auth, *, base_url: str, page_size: int, since: str | None) -> None:
        self.http, self.auth, self.url = http, auth, base_url + INVENTORY_PATH
        self.page_size, self.since = page_size, since

    def first(self) -> dict[str, Any]:
        return {"page": 0}

    def fetch(self, continuation: dict[str, Any]) -> Page:
        page = continuation.get("page")
        if not isinstance(page, int) or isinstance(page, bool) or page < 0:
            raise TransportError(f"{self.http.label}: bad continuation {continuation!r}")
        params = [("section", s) for s in SECTIONS] + [("page", str(page)), ("page-size", str(self.page_size)),
                                                      ("sort", "id:asc")]
        if self.since is not None:
            params.append(("filter", f'general.reportDate=ge="{self.since}"'))
        step = f"computers-inventory page {page}"
        answer = self.http.send("GET", self.url, step=step, params=params, headers=self.auth.headers,
                                unauthorized=self.auth.unauthorized,
                                hint="check the API client (client_id/client_secret) or username/password")
        raw, document, scrubbed = parse_document(self.http, answer, step=step, key="results")
        total = document.get("totalCount")
        total = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
        records = document["results"]
        done = not records or (total is not None and (page + 1) * self.page_size >= total)
        return Page(url=answer.url, raw=raw, records=records, next=None if done else {"page": page + 1},
                    attempts=answer.attempts, total=total, scrubbed=scrubbed)

    @classmethod
    def combine(cls, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
        document = super().combine(records)
        return {"totalCount": len(document["results"]), **document}
