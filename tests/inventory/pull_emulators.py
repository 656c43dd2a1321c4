"""Loopback emulators of the three inventory APIs a scheduled pull reads, from the vendors' documented shapes.

- **Jamf Pro**: ``POST /api/oauth/token`` (API client credentials, form) and ``POST /api/v1/auth/token``
  (HTTP Basic) -> bearer tokens; ``GET /api/v1/computers-inventory`` with repeatable ``section``
  (unrequested sections come back null, as Jamf answers), ``page`` / ``page-size`` (1..2000),
  ``sort`` (Jamf's default ``general.name:asc``) and an RSQL ``filter`` on ``general.reportDate`` /
  ``general.lastContactTime`` (``=ge=``, ``=gt=``, ``=le=``, ``=lt=``); answer
  ``{"totalCount", "results"}``; errors in the ``{"httpStatus", "errors": [...]}`` envelope.
- **Microsoft Entra + Graph**: ``POST /{tenant}/oauth2/v2.0/token`` (client credentials for
  ``https://graph.microsoft.com/.default``; a wrong secret is ``invalid_client`` with an AADSTS
  description); ``GET /v1.0/deviceManagement/managedDevices`` with ``$top`` (1..1000),
  ``$filter=lastSyncDateTime ge <time>`` (anything else: 400) and ``$skiptoken`` paging through an
  absolute ``@odata.nextLink`` (absent on the last page); ``GET .../managedDevices/{id}`` with
  ``$expand=detectedApps`` (a list never expands it).
- **Fleet**: ``GET /api/v1/fleet/hosts`` with an API token, ``page`` / ``per_page``,
  ``order_key`` (a hosts column) / ``order_direction``, ``after`` (needs ``order_key``; compared on
  that column) and ``populate_software``; answer ``{"hosts": [...]}``.

Every request is recorded (route, method, path, query, headers, body, status). Faults are queued per
route (:meth:`Emulator.fail`): status, headers (``Retry-After``) and body, for the next N requests.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest

JSON = "application/json"


@dataclass(frozen=True)
class Fault:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Request:
    route: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def when(text: str | None) -> datetime | None:
    if not text:
        return None
    value = text.strip().replace(" ", "T", 1)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Emulator:
    """A threaded loopback HTTP server answering :meth:`handle`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _serve(self) -> None:
                emulator._dispatch(self)

            do_GET = do_POST = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, route: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
             body: Any = b"") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        for _ in range(times):
            self._faults[route].append(Fault(status, tuple((headers or {}).items()), data))

    def of(self, route: str) -> list[Request]:
        return [r for r in self.requests if r.route == route]

    def parse_query(self, text: str) -> dict[str, list[str]]:
        """Form-style decoding ("+" is a space), as Go's and Java's servers read a query."""
        return parse_qs(text, keep_blank_values=True)

    # -- to implement ---------------------------------------------------------------------------------

    def route(self, method: str, path: str) -> str | None:
        raise NotImplementedError

    def handle(self, route: str, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> Reply:
        raise NotImplementedError

    # -- plumbing -------------------------------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = self.parse_query(parts.query)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        route = self.route(handler.command, parts.path)
        with self._lock:
            fault = self._faults[route].popleft() if route and self._faults[route] else None
        if route is None:
            reply = Reply(404, {"error": "no such route"})
        elif fault is not None:
            reply = Reply(fault.status, fault.body, dict(fault.headers))
        else:
            reply = self.handle(route, handler.command, parts.path, query, headers, body)
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        with self._lock:
            self.requests.append(Request(route or "?", handler.command, parts.path, query, headers, body, reply.status))
        handler.send_response(reply.status)
        handler.send_header("content-type", reply.headers.pop("content-type", JSON))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = query.get(name)
    return values[-1] if values else default


# --- Jamf Pro ----------------------------------------------------------------------------------------------

JAMF_SECTIONS = {"GENERAL": "general", "APPLICATIONS": "applications", "HARDWARE": "hardware",
                 "OPERATING_SYSTEM": "operatingSystem", "USER_AND_LOCATION": "userAndLocation",
                 "EXTENSION_ATTRIBUTES": "extensionAttributes", "DISK_ENCRYPTION": "diskEncryption",
                 "SECURITY": "security", "PURCHASING": "purchasing", "STORAGE": "storage"}
_JAMF_SORTS = {"id:asc", "id:desc", "general.name:asc", "general.name:desc", "general.reportDate:asc", "udid:asc"}
_RSQL = re.compile(r'^general\.(reportDate|lastContactTime)=(ge|gt|le|lt)="([^"]+)"$')


def _jamf_error(status: int, code: str, description: str) -> Reply:
    return Reply(status, {"httpStatus": status, "errors": [{"code": code, "description": description, "id": "0",
                                                            "field": None}]})


class JamfInventoryEmulator(Emulator):
    """``url`` is the Jamf Pro server."""

    def __init__(self, *, client_id: str, client_secret: str, username: str | None = None,
                 password: str | None = None, token: str = "jamf-access-token-5f4e3d2c1b0a") -> None:
        self.client_id, self.client_secret, self.username, self.password = client_id, client_secret, username, password
        self.token = token
        self.computers: dict[str, dict[str, Any]] = {}
        self.issued: set[str] = set()
        super().__init__()

    def add(self, *records: dict[str, Any]) -> None:
        for record in records:
            self.computers[str(record["id"])] = copy.deepcopy(record)

    def route(self, method: str, path: str) -> str | None:
        return {("POST", "/api/oauth/token"): "token", ("POST", "/api/v1/auth/token"): "auth-token",
                ("GET", "/api/v1/computers-inventory"): "inventory"}.get((method, path))

    def handle(self, route: str, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> Reply:
        if route == "token":
            form = _form(body)
            if (form.get("grant_type") != "client_credentials" or form.get("client_id") != self.client_id
                    or form.get("client_secret") != self.client_secret):
                return Reply(401, {"error": "invalid_client"})
            self.issued.add(self.token)
            return Reply(200, {"access_token": self.token, "scope": "api-role:1", "token_type": "Bearer",
                               "expires_in": 299})
        if route == "auth-token":
            given = headers.get("authorization", "")
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if self.username is None or given != f"Basic {expected}":
                return _jamf_error(401, "INVALID_CREDENTIALS", "Unauthorized")
            self.issued.add(self.token)
            return Reply(200, {"token": self.token, "expires": "2099-01-01T00:00:00.000Z"})
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.issued:
            return _jamf_error(401, "INVALID_TOKEN", "Unauthorized")
        sections = query.get("section") or ["GENERAL"]
        if any(s not in JAMF_SECTIONS for s in sections):
            return _jamf_error(400, "INVALID_FIELD", f"unknown section in {sections}")
        try:
            page = int(_one(query, "page", "0") or "0")
            size = int(_one(query, "page-size", "100") or "100")
        except ValueError:
            return _jamf_error(400, "INVALID_FIELD", "page and page-size must be integers")
        if page < 0 or not 1 <= size <= 2000:
            return _jamf_error(400, "INVALID_FIELD", "page-size must be 1..2000")
        sort = _one(query, "sort", "general.name:asc") or ""
        if sort not in _JAMF_SORTS:
            return _jamf_error(400, "INVALID_FIELD", f"cannot sort by {sort}")
        records = list(self.computers.values())
        text = _one(query, "filter")
        if text:
            match = _RSQL.match(text)
            bound = when(match.group(3)) if match else None
            if match is None or bound is None:
                return _jamf_error(400, "INVALID_RSQL_FILTER", f"cannot filter on {text}")
            field_name, op = match.group(1), match.group(2)

            def keep(record: dict[str, Any]) -> bool:
                value = when((record.get("general") or {}).get(field_name))
                if value is None:
                    return False
                return {"ge": value >= bound, "gt": value > bound, "le": value <= bound, "lt": value < bound}[op]

            records = [r for r in records if keep(r)]
        key, _, direction = sort.partition(":")
        if key == "id":
            records.sort(key=lambda r: int(r["id"]), reverse=direction == "desc")
        elif key == "udid":
            records.sort(key=lambda r: str(r.get("udid")))
        else:
            records.sort(key=lambda r: str((r.get("general") or {}).get(key.split(".")[1]) or ""),
                         reverse=direction == "desc")
        chosen = records[page * size:(page + 1) * size]
        results = []
        for record in chosen:
            item = {"id": record["id"], "udid": record.get("udid")}
            for name, attribute in JAMF_SECTIONS.items():
                item[attribute] = copy.deepcopy(record.get(attribute)) if name in sections else None
            results.append(item)
        return Reply(200, {"totalCount": len(records), "results": results})


def jamf_computer(n: int, *, version: str | None, report: datetime, contact: datetime | None = None,
                  arch: str = "arm64") -> dict[str, Any]:
    applications = [{"name": "Safari.app", "path": "/Applications/Safari.app", "version": "18.1",
                     "bundleId": "com.apple.Safari", "macAppStore": False, "sizeMegabytes": 12,
                     "updateAvailable": False, "externalVersionId": "0"}]
    if version is not None:
        applications.append({"name": "rt.app", "path": "/Applications/rt.app", "version": f"{version} (100)",
                             "cfBundleShortVersionString": version, "bundleId": "com.acme.rt", "macAppStore": False})
    return {
        "id": str(n), "udid": f"6D8C2F4A-{n:04d}",
        "general": {"name": f"mac-{n:03d}", "platform": "Mac", "lastIpAddress": f"10.0.0.{n % 250}",
                    "reportDate": iso(report), "lastContactTime": iso(contact or report),
                    "remoteManagement": {"managed": True, "managementUsername": "jamfadmin"},
                    "site": {"id": "-1", "name": "None"}, "extensionAttributes": []},
        "hardware": {"serialNumber": f"C02X{n:06d}", "model": "MacBook Pro", "processorArchitecture": arch},
        "operatingSystem": {"name": "macOS", "version": "15.1", "build": "24B83"},
        "applications": applications,
        "userAndLocation": {"username": f"user{n}"},
    }


# --- Microsoft Entra + Graph --------------------------------------------------------------------------------

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
_GRAPH_FILTER = re.compile(r"^lastSyncDateTime ge (\S+)$")


def _graph_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message,
                                    "innerError": {"date": "2026-11-22T12:00:00", "request-id": "r-1"}}})


class GraphEmulator(Emulator):
    """``url`` + ``/v1.0`` is the Graph base; ``url`` + ``/<tenant>/oauth2/v2.0/token`` the token endpoint."""

    def __init__(self, *, tenant: str, client_id: str, client_secret: str,
                 token: str = "graph-access-token-9a8b7c6d5e4f") -> None:
        self.tenant, self.client_id, self.client_secret, self.token = tenant, client_id, client_secret, token
        self.devices: dict[str, dict[str, Any]] = {}
        self.apps: dict[str, list[dict[str, Any]]] = {}
        #: a scheme://host:port put into every @odata.nextLink instead of this server's (adversarial tests)
        self.next_link_origin: str | None = None
        super().__init__()

    @property
    def token_url(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    def parse_query(self, text: str) -> dict[str, list[str]]:
        """OData reads the query literally: "+" stays a plus (a client must send spaces as %20)."""
        out: dict[str, list[str]] = {}
        for pair in filter(None, text.split("&")):
            name, _, value = pair.partition("=")
            out.setdefault(unquote(name), []).append(unquote(value))
        return out

    def add(self, device: dict[str, Any], apps: list[dict[str, Any]]) -> None:
        self.devices[device["id"]] = copy.deepcopy(device)
        self.apps[device["id"]] = copy.deepcopy(apps)

    def route(self, method: str, path: str) -> str | None:
        if method == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token":
            return "token"
        if method == "GET" and path == "/v1.0/deviceManagement/managedDevices":
            return "devices"
        if method == "GET" and path.startswith("/v1.0/deviceManagement/managedDevices/"):
            return "device"
        return None

    def handle(self, route: str, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> Reply:
        if route == "token":
            form = _form(body)
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return Reply(401, {"error": "invalid_client", "error_description":
                                   "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                                   "the request is the client secret value, not the client secret ID.",
                                   "error_codes": [7000215]})
            if form.get("scope") != GRAPH_SCOPE or form.get("grant_type") != "client_credentials":
                return Reply(400, {"error": "invalid_scope"})
            return Reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                               "access_token": self.token})
        if headers.get("authorization") != f"Bearer {self.token}":
            return _graph_error(401, "Unauthorized", "Access token is empty or invalid.")
        if route == "device":
            device_id = path.rsplit("/", 1)[1]
            device = self.devices.get(device_id)
            if device is None:
                return _graph_error(404, "ResourceNotFound", f"managedDevice {device_id} not found")
            entity = copy.deepcopy(device)
            if _one(query, "$expand") == "detectedApps":
                entity["detectedApps"] = copy.deepcopy(self.apps.get(device_id, []))
            return Reply(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/"
                                                 "managedDevices/$entity", **entity})
        try:
            top = int(_one(query, "$top", "1000") or "1000")
            skip = int(_one(query, "$skiptoken", "0") or "0")
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid $top or $skiptoken")
        if not 1 <= top <= 1000:
            return _graph_error(400, "BadRequest", "$top must be 1..1000")
        devices = sorted(self.devices.values(), key=lambda d: d["id"])
        text = _one(query, "$filter")
        if text:
            match = _GRAPH_FILTER.match(text)
            bound = when(match.group(1)) if match else None
            if match is None or bound is None:
                return _graph_error(400, "BadRequest", f"Invalid filter clause: {text}")
            devices = [d for d in devices if (moment := when(d.get("lastSyncDateTime"))) and moment >= bound]
        chosen = devices[skip:skip + top]
        answer: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/"
                                                    "managedDevices",
                                  "value": [copy.deepcopy(d) for d in chosen]}
        if skip + top < len(devices):
            params = {"$top": str(top), **({"$filter": text} if text else {}), "$skiptoken": str(skip + top)}
            origin = self.next_link_origin or self.url
            answer["@odata.nextLink"] = (f"{origin}/v1.0/deviceManagement/managedDevices?"
                                         + urlencode(params, quote_via=quote))
        return Reply(200, answer)


def graph_device(n: int, *, version: str | None, sync: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    device = {"id": f"0f1e2d3c-0000-4000-8000-{n:012d}", "userId": f"u-{n}", "deviceName": f"WIN-{n:03d}",
              "managedDeviceOwnerType": "company", "enrolledDateTime": "2026-01-02T10:00:00Z",
              "lastSyncDateTime": iso(sync), "operatingSystem": "Windows", "osVersion": "10.0.22631.4460",
              "complianceState": "compliant", "managementAgent": "mdm", "serialNumber": f"PF{n:06d}",
              "azureADDeviceId": f"aad-{n}", "model": "Latitude 7440", "manufacturer": "Dell Inc."}
    apps = [{"id": "edge-131", "displayName": "Microsoft Edge", "version": "131.0.2903.86", "sizeInByte": 0,
             "deviceCount": 0, "publisher": "Microsoft", "platform": "windows"}]
    if version is not None:
        apps.append({"id": f"rt-{version}", "displayName": "rt", "version": version, "sizeInByte": 1024,
                     "deviceCount": 0, "publisher": "Acme", "platform": "windows"})
    return device, apps


# --- Fleet ------------------------------------------------------------------------------------------------

_FLEET_COLUMNS = {"id", "hostname", "detail_updated_at", "software_updated_at", "seen_time", "h.updated_at",
                  "h.created_at", "computer_name", "platform"}


def _fleet_error(status: int, reason: str) -> Reply:
    return Reply(status, {"message": reason, "errors": [{"name": "base", "reason": reason}]})


class FleetEmulator(Emulator):
    """``url`` is the Fleet server."""

    def __init__(self, *, api_token: str) -> None:
        self.api_token = api_token
        self.hosts: dict[int, dict[str, Any]] = {}
        super().__init__()

    def add(self, *hosts: dict[str, Any]) -> None:
        for host in hosts:
            self.hosts[int(host["id"])] = copy.deepcopy(host)

    def route(self, method: str, path: str) -> str | None:
        return "hosts" if (method, path) == ("GET", "/api/v1/fleet/hosts") else None

    def handle(self, route: str, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> Reply:
        if headers.get("authorization") != f"Bearer {self.api_token}":
            return _fleet_error(401, "Authentication required")
        try:
            page = int(_one(query, "page", "0") or "0")
            per_page = int(_one(query, "per_page", "100") or "100")
        except ValueError:
            return _fleet_error(400, "page and per_page must be integers")
        order_key = _one(query, "order_key")
        after = _one(query, "after")
        if order_key is not None and order_key not in _FLEET_COLUMNS:
            return _fleet_error(422, f"invalid order_key {order_key}")
        if after is not None and order_key is None:
            return _fleet_error(422, "after requires order_key")
        column = (order_key or "id").removeprefix("h.")

        def value(host: dict[str, Any]) -> Any:
            return int(host["id"]) if column == "id" else (when(host.get(column)) or datetime.min.replace(tzinfo=UTC))

        hosts = sorted(self.hosts.values(), key=value, reverse=_one(query, "order_direction") == "desc")
        if after is not None:
            bound: Any = int(after) if column == "id" else when(after)
            if bound is None:
                return _fleet_error(422, f"invalid after value {after}")
            hosts = [h for h in hosts if value(h) > bound]
        chosen = [copy.deepcopy(h) for h in hosts[page * per_page:(page + 1) * per_page]]
        if _one(query, "populate_software") not in ("true", "without_vulnerability_details"):
            for host in chosen:
                host.pop("software", None)
        return Reply(200, {"hosts": chosen})


def fleet_host(n: int, *, version: str | None, updated: datetime) -> dict[str, Any]:
    software: list[dict[str, Any]] = [{"id": 901, "name": "openssl", "version": "3.0.13", "source": "deb_packages",
                                       "generated_cpe": "", "vulnerabilities": None}]
    if version is not None:
        software.append({"id": 900 + n, "name": "rt", "version": version, "source": "deb_packages",
                         "generated_cpe": "", "vulnerabilities": None, "installed_paths": ["/usr/local/bin/rt"]})
    stamp = iso(updated)
    return {"id": n, "uuid": f"a1b2c3d4-0000-4000-8000-{n:012d}", "hostname": f"build-{n:03d}.corp",
            "display_name": f"build-{n:03d}", "computer_name": f"build-{n:03d}", "platform": "ubuntu",
            "platform_like": "debian", "os_version": "Ubuntu 24.04.1 LTS", "osquery_version": "5.14.1",
            "cpu_type": "x86_64", "hardware_serial": f"SER-{n:05d}", "team_id": None, "team_name": None,
            "status": "online", "created_at": "2026-01-01T00:00:00Z", "updated_at": stamp,
            "detail_updated_at": stamp, "software_updated_at": stamp, "label_updated_at": stamp,
            "seen_time": stamp, "software": software,
            "issues": {"failing_policies_count": 0, "critical_vulnerabilities_count": 0, "total_issues_count": 0}}


# --- the lab: three emulated tools, a connector file naming them, a store ------------------------------------

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TENANT = "11111111-2222-3333-4444-555555555555"
JAMF_CLIENT = "ringward-api-client"
GRAPH_CLIENT = "22222222-2222-2222-2222-222222222222"
JAMF_USER = "svc-ringward"
SECRETS = {"RW_PULL_JAMF_SECRET": "jamf-client-secret-7c1f9e2a4b6d",
           "RW_PULL_JAMF_PASSWORD": "jamf-password-91e3c7a5f2",
           "RW_PULL_INTUNE_SECRET": "intune-client-secret-3d8e5a1c9b7f",
           "RW_PULL_FLEET_TOKEN": "fleet-api-token-b6a2d4f8e0c1"}
SOURCES = {"jamf": "mdm-jamf", "intune": "mdm-intune", "fleet": "fleetdm"}


class PullLab:
    """The emulators, the connector file and the store one test pulls with."""

    def __init__(self, store: Any, work: Any) -> None:
        from connectors.auth import TOKENS

        TOKENS.clear()
        self.store, self.work = store, work
        self.jamf = JamfInventoryEmulator(client_id=JAMF_CLIENT, client_secret=SECRETS["RW_PULL_JAMF_SECRET"],
                                          username=JAMF_USER, password=SECRETS["RW_PULL_JAMF_PASSWORD"])
        self.graph = GraphEmulator(tenant=TENANT, client_id=GRAPH_CLIENT,
                                   client_secret=SECRETS["RW_PULL_INTUNE_SECRET"])
        self.fleet = FleetEmulator(api_token=SECRETS["RW_PULL_FLEET_TOKEN"])
        self.sleeps: list[float] = []
        self.config = self.write_config()

    def close(self) -> None:
        from connectors.auth import TOKENS

        for emulator in (self.jamf, self.graph, self.fleet):
            emulator.close()
        TOKENS.clear()

    def emulator(self, provider: str) -> Emulator:
        return {"jamf": self.jamf, "intune": self.graph, "fleet": self.fleet}[provider]

    def secrets(self) -> list[str]:
        """Every credential and token of the lab (none may be kept anywhere)."""
        basic = base64.b64encode(f"{JAMF_USER}:{SECRETS['RW_PULL_JAMF_PASSWORD']}".encode()).decode()
        return [*SECRETS.values(), self.jamf.token, self.graph.token, basic]

    def write_config(self, *, jamf: str | None = None, extra: str = "", name: str = "connectors.yaml") -> Any:
        jamf_block = jamf or (f"  - name: mdm-jamf\n    provider: jamf\n    url: {self.jamf.url}\n"
                              f"    client_id: {JAMF_CLIENT}\n    client_secret: env:RW_PULL_JAMF_SECRET\n")
        text = (
            "schema_version: ringward.connectors.v1\n"
            "defaults: {timeout_seconds: 5}\n"
            "providers:\n"
            + jamf_block
            + f"  - name: mdm-intune\n    provider: intune\n    url: {self.graph.url}/v1.0\n"
              f"    tenant_id: {TENANT}\n    client_id: {GRAPH_CLIENT}\n"
              f"    client_secret: env:RW_PULL_INTUNE_SECRET\n    token_url: {self.graph.token_url}\n"
            + f"  - name: fleetdm\n    provider: linux\n    url: {self.fleet.url}\n"
              "    token: env:RW_PULL_FLEET_TOKEN\n    event_types: [\"ringward.inventory.pull-source\"]\n"
            + "  - name: ops-queue\n    provider: private_queue\n    directory: queue\n"
              "    event_types: [\"ringward.inventory.freshness.*\"]\n"
            + extra
        )
        path = self.work / name
        path.write_text(text)
        return path

    def basic_config(self) -> Any:
        """A connector file whose Jamf source is a user (``/api/v1/auth/token``), not an API client."""
        return self.write_config(name="basic.yaml", jamf=f"  - name: mdm-jamf\n    provider: jamf\n"
                                 f"    url: {self.jamf.url}\n    username: {JAMF_USER}\n"
                                 "    password: env:RW_PULL_JAMF_PASSWORD\n")

    def hooks(self) -> Any:
        import random

        from connectors.inventory_pull import RetryPolicy
        from ringward.operations.inventory.pull_ops import PullHooks

        return PullHooks(sleep=self.sleeps.append, rng=random.Random(7),
                         policy=RetryPolicy(max_attempts=3, backoff_base_seconds=0.01, backoff_cap_seconds=0.05,
                                            timeout_seconds=5))

    def pull(self, provider: str, *, at: datetime, **options: Any) -> dict[str, Any]:
        from ringward.operations.inventory.pull_ops import pull_inventory

        options.setdefault("page_size", 5)
        options.setdefault("batch_pages", 2)
        options.setdefault("software", ("rt",))
        return pull_inventory(self.store, config_path=options.pop("config", self.config), provider=provider, now=at,
                              actor="pull-bot", hooks=options.pop("hooks", None) or self.hooks(), **options)

    # -- fleets --------------------------------------------------------------------------------------------

    def seed(self, provider: str, count: int, *, without_runtime: tuple[int, ...] = ()) -> None:
        """``count`` hosts, host n last inventoried n hours before T0, on rt 1.2.3 (except ``without_runtime``)."""
        from datetime import timedelta

        for n in range(1, count + 1):
            self.set_host(provider, n, version=None if n in without_runtime else "1.2.3",
                          at=T0 - timedelta(hours=n))

    def set_host(self, provider: str, n: int, *, version: str | None, at: datetime) -> None:
        if provider == "jamf":
            self.jamf.add(jamf_computer(n, version=version, report=at))
        elif provider == "intune":
            self.graph.add(*graph_device(n, version=version, sync=at))
        else:
            self.fleet.add(fleet_host(n, version=version, updated=at))

    def remove_host(self, provider: str, n: int) -> None:
        if provider == "jamf":
            del self.jamf.computers[str(n)]
        elif provider == "intune":
            del self.graph.devices[graph_device(n, version=None, sync=T0)[0]["id"]]
        else:
            del self.fleet.hosts[n]

    @staticmethod
    def host_id(provider: str, n: int) -> str:
        """The endpoint id the normaliser gives host ``n``."""
        if provider == "jamf":
            return f"6D8C2F4A-{n:04d}"
        if provider == "intune":
            return f"0f1e2d3c-0000-4000-8000-{n:012d}"
        return f"a1b2c3d4-0000-4000-8000-{n:012d}"

    def list_requests(self, provider: str) -> list[Request]:
        route = {"jamf": "inventory", "intune": "devices", "fleet": "hosts"}[provider]
        return self.emulator(provider).of(route)


@pytest.fixture
def lab(inventory_env: Any, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PullLab]:
    """Import into a test module (``from tests.inventory.pull_emulators import lab  # noqa: F401``)."""
    from ringward.store import open_store

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    store = open_store(db_url)
    pull_lab = PullLab(store, inventory_env)
    try:
        yield pull_lab
    finally:
        pull_lab.close()
        store.close()
