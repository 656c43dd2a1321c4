"""A stateful Jamf Pro emulator on loopback (stdlib ThreadingHTTPServer in a thread).

It answers the calls the native publisher makes, the way Jamf Pro does (shapes from the Jamf Pro
API / Classic API references):

- ``POST /api/oauth/token``: API client credentials (form) -> ``access_token``; wrong ones: 401.
- Jamf Pro API (JSON, errors in an ``{"httpStatus", "errors": [...]}`` envelope):
  ``GET/POST /api/v1/packages`` (RSQL ``filter=packageName=="..."`` compared case-insensitively, an
  unescaped ``*`` a wildcard as in Jamf; paged with ``page``/``page-size``, ``totalCount`` of the
  whole search; required fields checked; names unique case-insensitively),
  ``PUT /api/v1/packages/{id}``, ``POST /api/v1/packages/{id}/upload`` (multipart parsed, the
  ``file`` part's bytes kept), ``GET/POST /api/v1/scripts``, ``GET/PUT /api/v1/scripts/{id}``.
- Classic API (XML, errors as an HTML status page): ``GET /JSSResource/policies/name/{name}`` and
  ``.../name/{name}/subset/General&Scripts`` (only the named sections; an unknown subset is a 400;
  404 when absent; names matched case-insensitively), ``POST /JSSResource/policies/id/0`` and
  ``PUT /JSSResource/policies/id/{id}`` (the XML sent is parsed; a PUT replaces only the sections it
  carries, a ``<scripts>`` or ``<package_configuration>`` list as a whole), answering
  ``<policy><id>N</id></policy>``.

Large uploads never sit in memory: a package upload body longer than :attr:`JamfEmulator.spill_bytes` is written
to a file in the emulator's temporary directory as it is read (recorded with its length and an empty
``body``), and a spilled package upload is parsed by streaming over that file (one part, delimited
exactly as RFC 7578 says, its content neither holding the delimiter nor cut short); the upload is
kept as an :class:`UploadedFile` (name of the file holding the content, its size and SHA-256).

Every request is recorded with the step it belongs to. Faults are injected per step: a status with
headers and body, a delay (client timeout), and optionally "apply, then fail" (the change is made
but the answer is lost).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REQUIRED_PACKAGE_FIELDS = (
    "packageName",
    "fileName",
    "categoryId",
    "priority",
    "fillUserTemplate",
    "uninstall",
    "rebootRequired",
    "osInstall",
    "suppressUpdates",
    "suppressFromDock",
    "suppressEula",
    "suppressRegistration",
)
_FILTER = re.compile(r'^(\w+)=="((?:[^"\\]|\\.)*)"$')
#: Classic API policy subsets (names compared case-insensitively, as Jamf does)
POLICY_SUBSETS = frozenset(
    {
        "general",
        "scope",
        "selfservice",
        "self_service",
        "package_configuration",
        "packages",
        "scripts",
        "printers",
        "dock_items",
        "account_maintenance",
        "reboot",
        "maintenance",
        "files_processes",
        "user_interaction",
        "disk_encryption",
    }
)
#: Classic sections that are lists: a PUT carrying one replaces the whole list
_LIST_SECTIONS = frozenset({"scripts", "package_configuration", "printers", "dock_items"})
#: largest page-size the Jamf Pro API accepts
MAX_PAGE_SIZE = 2000
#: bytes read from a spilled body at a time
_CHUNK = 1024 * 1024


def same_name(a: str, b: str) -> bool:
    """Jamf's name comparison (MySQL case-insensitive collation)."""
    return a.casefold() == b.casefold()


@dataclass(frozen=True)
class JamfFault:
    status: int = 500
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    #: seconds to wait before answering (longer than the client timeout: a timeout)
    delay: float = 0.0
    #: make the change first, then answer with the fault (a lost success)
    apply: bool = False

    @classmethod
    def of(cls, status: int, body: str = "", *, retry_after: str | None = None, **kwargs: Any) -> JamfFault:
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        return cls(status=status, body=body, headers=headers, **kwargs)


@dataclass(frozen=True)
class JamfRequest:
    step: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    #: the body (empty when it was longer than ``spill_bytes`` and went to a file)
    body: bytes
    status: int
    #: the body's real length
    length: int = -1


@dataclass(frozen=True)
class UploadedFile:
    """A large uploaded package, kept on disk: where, how long, its SHA-256."""

    path: Path
    size: int
    sha256: str


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class JamfState:
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, list[tuple[str, bytes | UploadedFile]]] = field(default_factory=lambda: defaultdict(list))
    scripts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: id -> the policy as an XML element (what Jamf would hold)
    policies: dict[str, ET.Element] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> str:
        value = str(self.next_id)
        self.next_id += 1
        return value


def _error(status: int, code: str, description: str, field_name: str | None = None) -> _Answer:
    item: dict[str, Any] = {"code": code, "description": description, "id": "0"}
    if field_name:
        item["field"] = field_name
    return _Answer(status, json.dumps({"httpStatus": status, "errors": [item]}).encode())


def _html(status: int, title: str, detail: str) -> _Answer:
    page = (
        '<html><head><title>Status page</title></head><body style="font-family: sans-serif;">'
        f'<p style="font-size: 1.2em;font-weight: bold;margin: 1em 0px;">{title}</p><p>{detail}</p>'
        '<p>You can get technical details <a href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html">here</a>.</p>'
        "</body></html>"
    )
    return _Answer(status, page.encode(), "text/html;charset=UTF-8")


def _xml(element: ET.Element, status: int = 200) -> _Answer:
    return _Answer(status, ET.tostring(element, encoding="utf-8", xml_declaration=True), "application/xml")


class JamfEmulator:
    """The emulator; ``url`` is the Jamf Pro server base."""

    def __init__(self, *, client_id: str, client_secret: str, token: str) -> None:
        self.client_id, self.client_secret, self.token = client_id, client_secret, token
        self.state = JamfState()
        self.requests: list[JamfRequest] = []
        self._faults: dict[str, deque[JamfFault]] = defaultdict(deque)
        self._lock = threading.Lock()
        #: seconds every API call takes before it is handled (token calls excepted)
        self.latency = 0.0
        #: bodies longer than this go to a file as they are read (never held in memory)
        self.spill_bytes = 1024 * 1024
        self._spill_dir = Path(tempfile.mkdtemp(prefix="jamf-emulator-"))
        self._spilled = 0
        self._spill_lock = threading.Lock()
        #: requests whose body ended before its Content-Length (method, path, received, declared)
        self.aborted: list[tuple[str, str, int, int]] = []
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            #: answer in one segment, without Nagle (keep-alive exchanges would wait for delayed ACKs)
            disable_nagle_algorithm = True
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body: bytes | Path
                if length > emulator.spill_bytes and self.command == "POST" and self.path.endswith("/upload"):
                    body = emulator.spill(self.rfile, length)
                else:
                    body = self.rfile.read(length) if length else b""
                received = body.stat().st_size if isinstance(body, Path) else len(body)
                if received < length:  # the client dropped the connection mid-body: nothing is handled
                    emulator.aborted.append((self.command, self.path, received, length))
                    self.close_connection = True
                    return
                answer = emulator.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if answer is None:  # a timeout fault: the client gave up; drop the connection
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="jamf-emulator", daemon=True
        )

    # -- lifecycle and test controls -----------------------------------------------------------------

    def start(self) -> JamfEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._spill_dir, ignore_errors=True)

    def spill_path(self) -> Path:
        """A new file name in the emulator's temporary directory."""
        with self._spill_lock:  # not ``_lock``: an upload is parsed while ``_lock`` is held
            self._spilled += 1
            n = self._spilled
        return self._spill_dir / f"spill-{n:05d}"

    def spill(self, source: Any, length: int) -> Path:
        """Copy ``length`` bytes of a request body to a new file, chunk by chunk."""
        path = self.spill_path()
        with path.open("wb") as target:
            left = length
            while left:
                chunk = source.read(min(_CHUNK, left))
                if not chunk:
                    break
                target.write(chunk)
                left -= len(chunk)
        return path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, step: str, *faults: JamfFault | int) -> None:
        """Answer the next calls of ``step`` with ``faults`` (in order), then normally again."""
        for fault in faults:
            self._faults[step].append(JamfFault(status=fault) if isinstance(fault, int) else fault)

    def steps(self) -> list[str]:
        return [r.step for r in self.requests]

    def of(self, step: str) -> list[JamfRequest]:
        return [r for r in self.requests if r.step == step]

    # -- dispatch ------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | Path) -> _Answer | None:
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        step, action = self._route(method, path)
        if self.latency and step != "token":
            time.sleep(self.latency)  # a slow but working server
        with self._lock:
            fault = self._faults[step].popleft() if self._faults[step] else None
        answer: _Answer | None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
            self._record(step, method, path, query, headers, body, 0)
            return None
        if fault is not None and not fault.apply:
            answer = _Answer(fault.status, fault.body.encode(), fault.content_type, fault.headers)
        else:
            with self._lock:
                answer = self._authorised(step, headers)
                if answer is None and isinstance(body, Path) and step != "upload package":
                    answer = _error(413, "PAYLOAD_TOO_LARGE", f"{step}: body too large")
                if answer is None:
                    answer = action(path, query, headers, body)
            if fault is not None:
                answer = _Answer(fault.status, fault.body.encode(), fault.content_type, fault.headers)
        self._record(step, method, path, query, headers, body, answer.status)
        return answer

    def _record(
        self, step: str, method: str, path: str, query: str, headers: dict[str, str], body: bytes | Path, status: int
    ) -> None:
        length = body.stat().st_size if isinstance(body, Path) else len(body)
        recorded = b"" if isinstance(body, Path) else body
        with self._lock:
            self.requests.append(JamfRequest(step, method, path, query, headers, recorded, status, length))

    def _authorised(self, step: str, headers: dict[str, str]) -> _Answer | None:
        if step == "token" or headers.get("authorization") == f"Bearer {self.token}":
            return None
        if step.endswith("policy"):
            return _html(401, "Unauthorized", "The request requires user authentication")
        return _error(401, "INVALID_TOKEN", "Unauthorized")

    def _route(self, method: str, path: str) -> tuple[str, Any]:
        routes: list[tuple[str, str, str, Any]] = [
            ("POST", r"/api/oauth/token", "token", self._token),
            ("GET", r"/api/v1/jamf-pro-version", "version", self._version),
            ("GET", r"/api/v1/packages", "find package", self._find_package),
            ("POST", r"/api/v1/packages", "create package", self._create_package),
            ("POST", r"/api/v1/packages/(\d+)/upload", "upload package", self._upload),
            ("PUT", r"/api/v1/packages/(\d+)", "record package hash", self._put_package),
            ("GET", r"/api/v1/scripts", "find script", self._find_script),
            ("GET", r"/api/v1/scripts/(\d+)", "read script", self._get_script),
            ("POST", r"/api/v1/scripts", "create script", self._create_script),
            ("PUT", r"/api/v1/scripts/(\d+)", "update script", self._put_script),
            ("GET", r"/JSSResource/policies/name/(.+)", "find policy", self._find_policy),
            ("POST", r"/JSSResource/policies/id/0", "create policy", self._create_policy),
            ("PUT", r"/JSSResource/policies/id/(\d+)", "update policy", self._put_policy),
        ]
        for verb, pattern, step, action in routes:
            if verb == method and re.fullmatch(pattern, path):
                return step, action
        return "unknown", lambda *_: _error(404, "NOT_FOUND", "no such endpoint")

    # -- Jamf Pro API ------------------------------------------------------------------------------

    def _version(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        return _Answer(200, b'{"version":"11.12.1-t1731333333"}')

    def _token(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        expected = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if form != expected or not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _Answer(401, b'{"error":"invalid_client"}')
        return _Answer(
            200, json.dumps({"access_token": self.token, "expires_in": 1199, "token_type": "Bearer"}).encode()
        )

    @staticmethod
    def _filter(query: str) -> tuple[str, re.Pattern[str]]:
        """The RSQL ``field=="value"``: the field, and the value as Jamf matches it (case-insensitive;
        an unescaped ``*`` is a wildcard, RSQL has no escape for it)."""
        params = parse_qs(query)
        match = _FILTER.match(params.get("filter", [""])[0])
        assert match, f"unexpected RSQL filter in {query!r}"
        value = re.sub(r"\\(.)", r"\1", match.group(2))
        pattern = ".*".join(re.escape(part) for part in value.split("*"))
        return match.group(1), re.compile(pattern, re.IGNORECASE | re.DOTALL)

    def _search(self, records: dict[str, dict[str, Any]], query: str) -> _Answer:
        key, pattern = self._filter(query)
        params = parse_qs(query)
        try:
            page = int(params.get("page", ["0"])[0])
            size = int(params.get("page-size", ["100"])[0])
        except ValueError:
            return _error(400, "INVALID_FIELD", "page and page-size must be numbers")
        if page < 0 or not 1 <= size <= MAX_PAGE_SIZE:
            return _error(400, "INVALID_FIELD", f"page-size must be 1..{MAX_PAGE_SIZE}, page >= 0")
        matches = [dict(r) for _, r in sorted(records.items(), key=lambda kv: int(kv[0]))]
        matches = [r for r in matches if pattern.fullmatch(str(r.get(key, "")))]
        results = matches[page * size : (page + 1) * size]
        return _Answer(200, json.dumps({"totalCount": len(matches), "results": results}).encode())

    def _find_package(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        return self._search(self.state.packages, query)

    def _check_package(self, record: dict[str, Any], own_id: str | None) -> _Answer | None:
        for name in REQUIRED_PACKAGE_FIELDS:
            if name not in record:
                return _error(400, "INVALID_FIELD", f"{name} is required", name)
        if any(
            same_name(p["packageName"], record["packageName"]) and i != own_id for i, p in self.state.packages.items()
        ):
            return _error(409, "DUPLICATE_FIELD", "packageName must be unique", "packageName")
        return None

    def _create_package(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        record = json.loads(body)
        problem = self._check_package(record, None)
        if problem:
            return problem
        package_id = self.state.new_id()
        self.state.packages[package_id] = {**record, "id": package_id}
        return _Answer(201, json.dumps({"id": package_id, "href": f"{self.url}/api/v1/packages/{package_id}"}).encode())

    def _put_package(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        package_id = path.rsplit("/", 1)[-1]
        if package_id not in self.state.packages:
            return _error(404, "NOT_FOUND", "Package not found")
        record = json.loads(body)
        problem = self._check_package(record, package_id)
        if problem:
            return problem
        self.state.packages[package_id] = {**record, "id": package_id}
        return _Answer(200, json.dumps(self.state.packages[package_id]).encode())

    def _upload(self, path: str, query: str, headers: dict[str, str], body: bytes | Path) -> _Answer:
        package_id = path.split("/")[-2]
        if package_id not in self.state.packages:
            return _error(404, "NOT_FOUND", "Package not found")
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data; boundary="):
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", f"expected multipart/form-data, got {content_type}")
        if isinstance(body, Path):
            spilled = self._spilled_upload(body, content_type)
            if isinstance(spilled, _Answer):
                return spilled
            self.state.uploads[package_id].append(spilled)
            return _Answer(
                201, json.dumps({"id": package_id, "href": f"{self.url}/api/v1/packages/{package_id}"}).encode()
            )
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        parts = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
        if len(parts) != 1:
            return _error(400, "INVALID_FIELD", "exactly one file part is required", "file")
        (part,) = parts
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        self.state.uploads[package_id].append((str(part.get_filename()), payload))
        return _Answer(201, json.dumps({"id": package_id, "href": f"{self.url}/api/v1/packages/{package_id}"}).encode())

    def _spilled_upload(self, body: Path, content_type: str) -> tuple[str, UploadedFile] | _Answer:
        """The one ``file`` part of a multipart body on disk, read by streaming (a few MiB at most)."""
        boundary = content_type.split("boundary=", 1)[1].strip('"').encode("ascii")
        opening, closing = b"--" + boundary + b"\r\n", b"\r\n--" + boundary + b"--\r\n"
        inner = b"\r\n--" + boundary  # a delimiter inside the content would start another part
        total = body.stat().st_size
        with body.open("rb") as source:
            head = source.read(64 * 1024)
            end = head.find(b"\r\n\r\n")
            if not head.startswith(opening) or end < 0:
                return _error(400, "INVALID_FIELD", "malformed multipart body", "file")
            part = BytesParser(policy=HTTP).parsebytes(head[len(opening) : end + 4])
            if part.get_param("name", header="content-disposition") != "file":
                return _error(400, "INVALID_FIELD", "exactly one file part is required", "file")
            start, stop = end + 4, total - len(closing)
            source.seek(stop)
            if stop < start or source.read() != closing:
                return _error(400, "INVALID_FIELD", "multipart body not closed by its boundary", "file")
            source.seek(start)
            target = self.spill_path()
            digest = hashlib.sha256()
            left, tail = stop - start, b""
            with target.open("wb") as copy_:
                while left:
                    chunk = source.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    if inner in tail + chunk:
                        return _error(400, "INVALID_FIELD", "exactly one file part is required", "file")
                    tail = (tail + chunk)[-(len(inner) - 1) :]
                    digest.update(chunk)
                    copy_.write(chunk)
        return str(part.get_filename()), UploadedFile(target, stop - start, digest.hexdigest())

    def _find_script(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        return self._search(self.state.scripts, query)

    def _create_script(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        record = json.loads(body)
        if not record.get("name"):
            return _error(400, "INVALID_FIELD", "name is required", "name")
        if any(same_name(s["name"], record["name"]) for s in self.state.scripts.values()):
            return _error(409, "DUPLICATE_FIELD", "name must be unique", "name")
        script_id = self.state.new_id()
        self.state.scripts[script_id] = {**record, "id": script_id}
        return _Answer(201, json.dumps({"id": script_id, "href": f"{self.url}/api/v1/scripts/{script_id}"}).encode())

    def _get_script(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        script = self.state.scripts.get(path.rsplit("/", 1)[-1])
        if script is None:
            return _error(404, "NOT_FOUND", "Script not found")
        return _Answer(200, json.dumps(script).encode())

    def _put_script(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        script_id = path.rsplit("/", 1)[-1]
        if script_id not in self.state.scripts:
            return _error(404, "NOT_FOUND", "Script not found")
        record = json.loads(body)
        if any(same_name(s["name"], record.get("name", "")) and i != script_id for i, s in self.state.scripts.items()):
            return _error(409, "DUPLICATE_FIELD", "name must be unique", "name")
        self.state.scripts[script_id] = {**record, "id": script_id}
        return _Answer(200, json.dumps(self.state.scripts[script_id]).encode())

    # -- Classic API ---------------------------------------------------------------------------------

    def _policy_by_name(self, name: str, *, other_than: str | None = None) -> tuple[str, ET.Element] | None:
        for policy_id, policy in self.state.policies.items():
            if same_name(policy.findtext("general/name") or "", name) and policy_id != other_than:
                return policy_id, policy
        return None

    def _find_policy(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        rest = path.removeprefix("/JSSResource/policies/name/")
        encoded, _, subsets = rest.partition("/subset/")
        if "/" in encoded:
            return _html(404, "Not Found", "The server has not found anything matching the request URI")
        wanted = [s.lower() for s in subsets.split("&")] if subsets else []
        if any(s not in POLICY_SUBSETS for s in wanted):
            return _html(400, "Bad Request", f"Invalid subset: {subsets}")
        found = self._policy_by_name(unquote(encoded))
        if found is None:
            return _html(404, "Not Found", "The server has not found anything matching the request URI")
        policy = found[1]
        if wanted:
            names = {"selfservice": "self_service", "packages": "package_configuration"}
            keep = {names.get(s, s) for s in wanted}
            answer = ET.Element("policy")
            answer.extend(copy.deepcopy(section) for section in policy if section.tag in keep)
            policy = answer
        return _xml(policy)

    def _parse(self, body: bytes) -> ET.Element | _Answer:
        try:
            element = ET.fromstring(body)
        except ET.ParseError as exc:
            return _html(400, "Bad Request", f"Problem with XML: {exc}")
        if element.tag != "policy" or not element.findtext("general/name"):
            return _html(400, "Bad Request", "Problem with policy name")
        # Jamf stores and answers each script of a policy with its name
        for script in element.findall("scripts/script"):
            record = self.state.scripts.get((script.findtext("id") or "").strip())
            if record is not None and script.find("name") is None:
                ET.SubElement(script, "name").text = record["name"]
        return element

    def _create_policy(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        element = self._parse(body)
        if isinstance(element, _Answer):
            return element
        if self._policy_by_name(element.findtext("general/name") or "") is not None:
            return _html(409, "Conflict", "Error: Duplicate name")
        policy_id = self.state.new_id()
        general = element.find("general")
        assert general is not None
        ident = ET.Element("id")
        ident.text = policy_id
        general.insert(0, ident)
        self.state.policies[policy_id] = element
        return _xml(_id_answer(policy_id), 201)

    def _put_policy(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        policy_id = path.rsplit("/", 1)[-1]
        current = self.state.policies.get(policy_id)
        if current is None:
            return _html(404, "Not Found", "The server has not found anything matching the request URI")
        element = self._parse(body)
        if isinstance(element, _Answer):
            return element
        if self._policy_by_name(element.findtext("general/name") or "", other_than=policy_id) is not None:
            return _html(409, "Conflict", "Error: Duplicate name")
        for section in element:  # a Classic PUT changes only the elements it carries
            target = current.find(section.tag)
            if target is not None and section.tag in _LIST_SECTIONS:
                current.remove(target)
                target = None
            if target is None:
                current.append(section)
                continue
            for child in section:
                old = target.find(child.tag)
                if old is not None:
                    target.remove(old)
                target.append(child)
        return _xml(_id_answer(policy_id), 201)


def _id_answer(policy_id: str) -> ET.Element:
    answer = ET.Element("policy")
    ET.SubElement(answer, "id").text = policy_id
    return answer
