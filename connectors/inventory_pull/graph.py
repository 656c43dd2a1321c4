"""Microsoft Graph ``GET /deviceManagement/managedDevices`` with each device's detected apps.

Devices: ``$top`` per page, following ``@odata.nextLink`` (which must stay on the configured Graph
host and API path: the bearer token is never sent anywhere else, and a link that points back at
the page just read is a loop); an incremental read adds ``$filter=lastSyncDateTime ge <time>``
(detected apps refresh on the device's sync). A list does not expand ``detectedApps``, so each
device is read once more, ``GET /deviceManagement/managedDevices/{id}?$expand=detectedApps``, a few
at a time; a device gone between the two reads (404) is left out with a warning. The records are
the devices with their ``detectedApps[]`` (``displayName``, ``version``, ...), the shape the Intune
normaliser reads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx

from connectors.inventory_pull.auth import Auth
from connectors.inventory_pull.http import PullHttp
from connectors.inventory_pull.pages import Page, Pager, parse_document
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import MalformedDocumentError, TransportError

DEVICES_PATH = "/deviceManagement/managedDevices"
MAX_PAGE_SIZE = 1000
#: device detail reads in flight at once
DETAIL_CONCURRENCY = 4
_HINT = "check tenant_id, client_id and client_secret (and the app's DeviceManagementManagedDevices.Read.All)"


class GraphPager(Pager):
    provider: ClassVar[str] = "intune"
    records_key: ClassVar[str] = "value"
    clock_field: ClassVar[str] = "lastSyncDateTime"

    def __init__(self, http: PullHttp, auth: Auth, *, base_url: str, page_size: int, since: str | None) -> None:
        self.http, self.auth, self.base = http, auth, base_url
        self.page_size, self.since = page_size, since
        self._base_url = httpx.URL(base_url)

    def first(self) -> dict[str, Any]:
        params = {"$top": str(self.page_size)}
        if self.since is not None:
            params["$filter"] = f"lastSyncDateTime ge {self.since}"
        # spaces as %20, never "+": OData reads the query literally (as Graph's own nextLinks do)
        return {"url": f"{self.base}{DEVICES_PATH}?{urlencode(params, quote_via=quote, safe='$:')}"}

    def _check_link(self, link: Any) -> str:
        if not isinstance(link, str) or not link:
            raise TransportError(f"{self.http.label}: @odata.nextLink is not a URL")
        try:
            url = httpx.URL(link)
        except httpx.InvalidURL as exc:
            raise TransportError(f"{self.http.label}: @odata.nextLink is not a URL ({exc})") from None
        base = self._base_url
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) or not url.path.startswith(
                base.path.rstrip("/") + DEVICES_PATH):
            raise TransportError(f"{self.http.label}: @odata.nextLink leaves the configured Graph API "
                                 f"({self.http.scrubber.scrub(str(url.copy_with(query=None)))}); "
                                 "refusing to send the token there")
        return link

    def fetch(self, continuation: dict[str, Any]) -> Page:
        url = self._check_link(continuation.get("url"))
        step = "managedDevices page"
        answer = self.http.send("GET", url, step=step, headers=self.auth.headers, unauthorized=self.auth.unauthorized,
                                hint=_HINT)
        raw, document, scrubbed = parse_document(self.http, answer, step=step, key="value")
        link = document.get("@odata.nextLink")
        following = None
        if link is not None:
            following = self._check_link(link)
            if following == url:
                raise TransportError(f"{self.http.label}: @odata.nextLink repeats the page just read ({answer.url})")
        devices = document["value"]
        warnings: list[str] = []
        with ThreadPoolExecutor(max_workers=DETAIL_CONCURRENCY) as pool:
            details = list(pool.map(self._detected_apps, devices))
        records = []
        for device, apps in zip(devices, details, strict=True):
            if apps is None:
                warnings.append(f"device {device.get('id')} was removed before its detected apps were read")
                continue
            records.append({**device, "detectedApps": apps})
        return Page(url=answer.url, raw=raw, records=records, next=None if following is None else {"url": following},
                    attempts=answer.attempts, detail_calls=len(devices), scrubbed=scrubbed,
                    warnings=tuple(warnings))

    def _detected_apps(self, device: dict[str, Any]) -> list[dict[str, Any]] | None:
        device_id = device.get("id")
        if not isinstance(device_id, str) or not device_id:
            raise TransportError(f"{self.http.label}: managedDevices: a device has no id")
        step = f"device {device_id} detectedApps"
        answer = self.http.send("GET", f"{self.base}{DEVICES_PATH}/{quote(device_id, safe='')}",
                                params={"$expand": "detectedApps"}, step=step, headers=self.auth.headers,
                                unauthorized=self.auth.unauthorized, hint=_HINT, allow=frozenset({404}))
        if answer.status == 404:
            return None
        text = answer.body.decode("utf-8", "replace")
        body = self.http.scrubber.scrub(text).encode("utf-8") if self.http.scrubber.found_in(text) else answer.body
        try:
            document = loads_strict(body, source=f"{self.http.label}: {step} ({answer.url})",
                                    max_bytes=max(len(body), 1))
        except MalformedDocumentError as exc:
            raise TransportError(self.http.scrubber.scrub(exc.message)) from None
        apps = document.get("detectedApps", []) if isinstance(document, dict) else None
        if not isinstance(apps, list) or not all(isinstance(a, dict) for a in apps):
            raise TransportError(f"{self.http.label}: {step}: expected a list of detectedApps ({answer.url})")
        return apps
