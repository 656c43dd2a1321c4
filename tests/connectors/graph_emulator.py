"""A stateful Microsoft Graph + Entra + Azure Blob emulator on loopback for the Intune publisher tests.

It serves (under ``/v1.0``) the win32LobApp calls the native Intune publisher makes: app search with
``$filter`` and ``@odata.nextLink`` paging, create, PATCH, content versions, content files whose
``uploadState`` moves pending -> ``azureStorageUriRequestSuccess`` -> (commit) pending ->
``commitFileSuccess``/``commitFileFailed``, assignments; the Entra token endpoint; and an Azure Blob
endpoint taking ``Put Block``/``Put Block List`` against a SAS signature. A commit is judged the way
Intune judges it, by this module's own decryptor (:func:`verify_intunewin`, written from the format,
not shared with the publisher): HMAC-SHA256(macKey, IV || ciphertext) must be the first 32 bytes,
the IV the next 16 and equal to ``initializationVector``, the PKCS7 padding valid, ``fileDigest``
the SHA-256 of the plain zip, and ``size``/``sizeEncrypted`` the real sizes.

Like the real services it checks what clients get wrong: the token endpoint wants the configured
client id, secret and the Graph ``.default`` scope; the app search honours the ``isof`` type
filter, ``$select`` (a property of a derived type is refused without its cast, as Graph does) and
``$top``; ``Put Block`` ids must be base64 and of one length per blob (``x-ms-blob-type`` is not
required: it belongs to ``Put Blob``).

Large uploads never sit in memory: a ``Put Block`` body longer than :attr:`GraphEmulator.spill_bytes` is written to
a file in the emulator's own temporary directory as it is read (recorded with its length and an empty
``body``), blocks and committed blobs stay files, and a commit is verified by streaming over the file
(:func:`verify_intunewin_file`), so the emulator can judge a multi-hundred-MiB upload in a few MiB.

The upload URL can be made to expire (:attr:`GraphEmulator.expire_sas_after_blocks`): Azure then
answers 403 ``AuthenticationFailed`` until the client renews it (``POST {file}/renewUpload``, state
``azureStorageUriRenewalPending`` -> ``azureStorageUriRenewalSuccess``, with a new signature).

Every request is recorded (method, path, query, headers, body, step). Faults are scripted per step
(:meth:`GraphEmulator.fail`): any status with headers and body, a delay before answering (timeouts),
and optionally "done but slow to answer" (the request is handled at once, then the answer is held
back: the client gives up, the server has acted, whatever the timing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CLIENT_ID = "ringward-graph-app"
CLIENT_SECRET = "intune-client-secret-ccc333ddd444"  # tests.connectors.conftest.SECRETS["RW_INTUNE_SECRET"]
SCOPE = "https://graph.microsoft.com/.default"
TOKEN = "graph-bearer-token-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SAS_SIG = "sasSig0123SECRETxyzQWERTYuiop9876"
TENANT = "11111111-2222-3333-4444-555555555555"
APPS = "/v1.0/deviceAppManagement/mobileApps"
_APP = re.compile(r"^/v1\.0/deviceAppManagement/mobileApps/([^/]+)$")
_VERSIONS = re.compile(r"^/v1\.0/deviceAppManagement/mobileApps/([^/]+)/microsoft\.graph\.win32LobApp/contentVersions$")
_FILES = re.compile(
    r"^/v1\.0/deviceAppManagement/mobileApps/([^/]+)/microsoft\.graph\.win32LobApp/contentVersions/([^/]+)/files$"
)
_FILE = re.compile(
    r"^/v1\.0/deviceAppManagement/mobileApps/([^/]+)/microsoft\.graph\.win32LobApp/contentVersions/([^/]+)"
    r"/files/([^/]+)(/commit|/renewUpload)?$"
)
_ASSIGN = re.compile(r"^/v1\.0/deviceAppManagement/mobileApps/([^/]+)/(assign|assignments)$")
_BLOB = re.compile(r"^/blob/([^/]+)$")
_NAME_FILTER = re.compile(r"displayName eq '((?:[^']|'')*)'")
_ISOF = re.compile(r"isof\('microsoft\.graph\.(\w+)'\)")
#: properties of the mobileApp base type (selectable on /mobileApps without a type cast)
MOBILE_APP_PROPERTIES = frozenset(
    {
        "id",
        "displayName",
        "description",
        "publisher",
        "largeIcon",
        "createdDateTime",
        "lastModifiedDateTime",
        "isFeatured",
        "privacyInformationUrl",
        "informationUrl",
        "owner",
        "developer",
        "notes",
        "publishingState",
    }
)


#: bytes read from a spilled body or blob at a time
_CHUNK = 1024 * 1024


class IntunewinError(Exception):
    """The emulator's verdict on a committed upload that Intune would refuse."""


def _info_fields(info: Mapping[str, Any]) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """key, macKey, IV, mac, fileDigest of a ``fileEncryptionInfo``, checked for shape."""

    def field_(name: str, length: int) -> bytes:
        try:
            value = base64.b64decode(str(info[name]), validate=True)
        except (KeyError, binascii.Error) as exc:
            raise IntunewinError(f"fileEncryptionInfo.{name}: missing or not base64") from exc
        if len(value) != length:
            raise IntunewinError(f"fileEncryptionInfo.{name}: expected {length} bytes, found {len(value)}")
        return value

    fields = (
        field_("encryptionKey", 32),
        field_("macKey", 32),
        field_("initializationVector", 16),
        field_("mac", 32),
        field_("fileDigest", 32),
    )
    if info.get("profileIdentifier") != "ProfileVersion1" or info.get("fileDigestAlgorithm") != "SHA256":
        raise IntunewinError("expected profile ProfileVersion1 with SHA256")
    return fields


def verify_intunewin_file(
    path: Path, info: Mapping[str, Any], *, size: int, size_encrypted: int, plain_to: Path | None = None
) -> str:
    """:func:`verify_intunewin` for an upload on disk, streamed (a few MiB whatever its size): the
    SHA-256 of the plain zip, written to ``plain_to`` when given. The same checks, in the same order.
    """
    key, mac_key, iv, mac, digest = _info_fields(info)
    total = path.stat().st_size
    if total != size_encrypted:
        raise IntunewinError(f"expected sizeEncrypted {size_encrypted}, found {total} bytes")
    if total < 32 + 16 + 16 or (total - 48) % 16:
        raise IntunewinError(f"expected HMAC + IV + whole AES blocks, found {total} bytes")
    with path.open("rb") as source:
        head_mac, head_iv = source.read(32), source.read(16)
        signer = crypto_hmac.HMAC(mac_key, hashes.SHA256())
        signer.update(head_iv)
        while chunk := source.read(_CHUNK):
            signer.update(chunk)
        try:
            signer.verify(head_mac)
        except InvalidSignature as exc:
            raise IntunewinError("HMAC-SHA256(macKey, IV || ciphertext) is not the first 32 bytes") from exc
        if head_mac != mac:
            raise IntunewinError("the first 32 bytes are not fileEncryptionInfo.mac")
        if head_iv != iv:
            raise IntunewinError("bytes 32..48 are not fileEncryptionInfo.initializationVector")
        source.seek(48)
        decryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).decryptor()
        found = hashlib.sha256()
        plain_size = 0
        held = b""  # the last block, which carries the padding, is held back until the end
        with plain_to.open("wb") if plain_to is not None else _Discard() as sink:
            while chunk := source.read(_CHUNK):
                data = held + decryptor.update(chunk)
                ready, held = data[:-16], data[-16:]
                found.update(ready)
                sink.write(ready)
                plain_size += len(ready)
            held += decryptor.finalize()
            pad = held[-1]
            if not 1 <= pad <= 16 or held[-pad:] != bytes([pad]) * pad:
                raise IntunewinError("invalid PKCS7 padding")
            last = held[:-pad]
            found.update(last)
            sink.write(last)
            plain_size += len(last)
    if found.digest() != digest:
        raise IntunewinError("fileDigest is not the SHA-256 of the decrypted package")
    if plain_size != size:
        raise IntunewinError(f"expected size {size}, found {plain_size} decrypted bytes")
    return found.hexdigest()


class _Discard:
    def __enter__(self) -> _Discard:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: bytes) -> int:
        return len(data)


def verify_intunewin(data: bytes, info: Mapping[str, Any], *, size: int, size_encrypted: int) -> bytes:
    """The plain zip of an ``.intunewin`` upload, checked as Intune checks it on commit.

    Independent of the publisher's code: HMAC and AES come from ``cryptography`` primitives and the
    padding is removed by hand.
    """

    def field_(name: str, length: int | None = None) -> bytes:
        try:
            value = base64.b64decode(str(info[name]), validate=True)
        except (KeyError, binascii.Error) as exc:
            raise IntunewinError(f"fileEncryptionInfo.{name}: missing or not base64") from exc
        if length is not None and len(value) != length:
            raise IntunewinError(f"fileEncryptionInfo.{name}: expected {length} bytes, found {len(value)}")
        return value

    key, mac_key, iv = field_("encryptionKey", 32), field_("macKey", 32), field_("initializationVector", 16)
    mac, digest = field_("mac", 32), field_("fileDigest", 32)
    if info.get("profileIdentifier") != "ProfileVersion1" or info.get("fileDigestAlgorithm") != "SHA256":
        raise IntunewinError("expected profile ProfileVersion1 with SHA256")
    if len(data) != size_encrypted:
        raise IntunewinError(f"expected sizeEncrypted {size_encrypted}, found {len(data)} bytes")
    if len(data) < 32 + 16 + 16 or (len(data) - 48) % 16:
        raise IntunewinError(f"expected HMAC + IV + whole AES blocks, found {len(data)} bytes")
    head_mac, head_iv, ciphertext = data[:32], data[32:48], data[48:]
    signer = crypto_hmac.HMAC(mac_key, hashes.SHA256())
    signer.update(head_iv + ciphertext)
    try:
        signer.verify(head_mac)
    except InvalidSignature as exc:
        raise IntunewinError("HMAC-SHA256(macKey, IV || ciphertext) is not the first 32 bytes") from exc
    if head_mac != mac:
        raise IntunewinError("the first 32 bytes are not fileEncryptionInfo.mac")
    if head_iv != iv:
        raise IntunewinError("bytes 32..48 are not fileEncryptionInfo.initializationVector")
    decryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise IntunewinError("invalid PKCS7 padding")
    plain = padded[:-pad]
    if hashlib.sha256(plain).digest() != digest:
        raise IntunewinError("fileDigest is not the SHA-256 of the decrypted package")
    if len(plain) != size:
        raise IntunewinError(f"expected size {size}, found {len(plain)} decrypted bytes")
    return plain


@dataclass(frozen=True)
class Fault:
    status: int = 500
    body: str = '{"error":{"code":"InternalServerError","message":"injected"}}'
    headers: tuple[tuple[str, str], ...] = ()
    #: seconds before answering
    delay: float = 0.0
    #: after the delay, handle the request normally (the server acts although the client gave up)
    then_handle: bool = False
    #: handle the request at once, then hold the answer back for ``delay`` (acted, answer lost)
    handle_first: bool = False

    @classmethod
    def ok(cls) -> Fault:
        """Handle the call normally (a placeholder to fail a later call of the same step)."""
        return cls(then_handle=True)

    @classmethod
    def of(cls, status: int, body: str = "", **headers: str) -> Fault:
        return cls(status=status, body=body, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()))


@dataclass(frozen=True)
class Seen:
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

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ContentFileState:
    id: str
    name: str
    size: int
    size_encrypted: int
    blob: str
    upload_state: str = "azureStorageUriRequestPending"
    polls_left: int = 1
    encryption_info: dict[str, Any] | None = None
    commit_error: str | None = None
    renewals: int = 0
    #: the decrypted package of a committed blob on disk (kept by the judge)
    plain: Path | None = None


@dataclass
class BlobState:
    #: block id -> its bytes, or the file holding them (large blocks)
    blocks: dict[str, bytes | Path] = field(default_factory=dict)
    #: the committed blob: bytes, or a file (large blobs)
    committed: bytes | Path | None = None
    block_puts: int = 0
    #: the signature the blob accepts now (renewals change it)
    sig: str = SAS_SIG
    #: blocks accepted under the current signature
    puts_since_renewal: int = 0


class GraphEmulator:
    """The emulator; ``start()`` it, point a destination at :attr:`base` and :attr:`token_url`."""

    def __init__(
        self,
        *,
        page_size: int = 1000,
        pending_polls: int = 1,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
    ) -> None:
        #: the most apps one page holds, whatever $top asks (Graph's own page limit)
        self.page_size = page_size
        #: pending answers after a commit (None: ``pending_polls``)
        self.commit_pending_polls: int | None = None
        #: bodies longer than this go to a file as they are read (never held in memory)
        self.spill_bytes = 1024 * 1024
        #: the upload URL expires after this many blocks under one signature (None: never)
        self.expire_sas_after_blocks: int | None = None
        self._spill_dir = Path(tempfile.mkdtemp(prefix="graph-emulator-"))
        self._spilled = 0
        self.client_id = client_id
        self.client_secret = client_secret
        self.pending_polls = pending_polls
        self.apps: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[str]] = defaultdict(list)
        self.files: dict[tuple[str, str], list[ContentFileState]] = defaultdict(list)
        self.blobs: dict[str, BlobState] = defaultdict(BlobState)
        self.assignments: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Seen] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._ids = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> GraphEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                emulator._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="graph-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self._spill_dir, ignore_errors=True)

    def spill_path(self) -> Path:
        """A new file name in the emulator's temporary directory."""
        with self._lock:
            self._spilled += 1
            n = self._spilled
        return self._spill_dir / f"spill-{n:05d}"

    def _read_body(self, handler: BaseHTTPRequestHandler, *, spill: bool) -> bytes | Path:
        length = int(handler.headers.get("content-length") or 0)
        if not spill or length <= self.spill_bytes:
            return handler.rfile.read(length) if length else b""
        path = self.spill_path()
        with path.open("wb") as target:
            left = length
            while left:
                chunk = handler.rfile.read(min(_CHUNK, left))
                if not chunk:
                    break
                target.write(chunk)
                left -= len(chunk)
        return path

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base(self) -> str:
        return f"{self.origin}/v1.0"

    @property
    def token_url(self) -> str:
        return f"{self.origin}/{TENANT}/oauth2/v2.0/token"

    # -- test controls -----------------------------------------------------------------------------------

    def fail(self, step: str, *faults: Fault | int) -> GraphEmulator:
        """Answer the next calls of ``step`` with ``faults`` (an int is that status with a Graph error body)."""
        for fault in faults:
            self.faults[step].append(Fault(status=fault) if isinstance(fault, int) else fault)
        return self

    def add_app(self, **fields: Any) -> str:
        """Seed an app (as if made earlier, by Ringward or by a person); its id."""
        app_id = self._new_id("app")
        self.apps[app_id] = {
            "@odata.type": "#microsoft.graph.win32LobApp",
            "id": app_id,
            "committedContentVersion": None,
            **fields,
        }
        return app_id

    def finish_commits(self) -> None:
        """The service completes every pending commit now (as if it happened after the client gave up)."""
        with self._lock:
            for files in self.files.values():
                for state in files:
                    if state.upload_state == "commitFilePending":
                        state.upload_state = self._judge_commit(state)

    def steps(self) -> list[str]:
        return [r.step for r in self.requests]

    def of_step(self, step: str) -> list[Seen]:
        return [r for r in self.requests if r.step == step]

    # -- serving -----------------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            n = self._ids
        if prefix == "app":
            return f"0a1b2c3d-0000-4000-8000-{n:012d}"
        return f"{prefix}{n:04d}"

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        method, path, query = handler.command, parts.path, parts.query
        headers = {k.lower(): v for k, v in handler.headers.items()}
        step = self._step(method, path, query)
        body = self._read_body(handler, spill=step == "block")  # only blocks carry content
        length = body.stat().st_size if isinstance(body, Path) else len(body)
        if length < int(handler.headers.get("content-length") or 0):
            handler.close_connection = True  # the client dropped the connection mid-body: nothing is handled
            return
        fault: Fault | None = None
        with self._lock:
            if self.faults[step]:
                fault = self.faults[step].popleft()
        status, answer, extra = 500, b"", ()
        if fault is not None and fault.delay and not fault.handle_first:
            time.sleep(fault.delay)
        if fault is not None and not (fault.then_handle or fault.handle_first):
            status, answer, extra = fault.status, fault.body.encode(), fault.headers
        else:
            try:
                with self._lock:
                    status, value = self._handle(step, method, path, query, headers, body)
            except Exception as exc:  # an emulator bug must show as a 500, not a hang
                status, value = 500, {"error": {"code": "EmulatorError", "message": repr(exc)}}
            answer = b"" if value is None else json.dumps(value).encode()
            extra = (("content-type", "application/json"),) if value is not None else ()
        recorded = b"" if isinstance(body, Path) else body
        with self._lock:
            self.requests.append(Seen(step, method, path, query, headers, recorded, status, length))
        if fault is not None and fault.handle_first:
            time.sleep(fault.delay)
        try:
            handler.send_response(status)
            for name, value_ in extra:
                handler.send_header(name, value_)
            handler.send_header("content-length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _step(method: str, path: str, query: str) -> str:
        if path.endswith("/oauth2/v2.0/token"):
            return "token"
        if _BLOB.match(path):
            comp = parse_qs(query).get("comp", [""])[0]
            return {"block": "block", "blocklist": "blocklist"}.get(comp, "blob")
        if path == APPS:
            return {"GET": "find", "POST": "create"}.get(method, "apps")
        if _APP.match(path):
            return {"PATCH": "patch", "GET": "get app"}.get(method, "app")
        if _VERSIONS.match(path):
            return {"GET": "versions", "POST": "create version"}.get(method, "versions")
        if _FILES.match(path):
            return {"GET": "version files", "POST": "create file"}.get(method, "files")
        match = _FILE.match(path)
        if match:
            return {"/commit": "commit", "/renewUpload": "renew"}.get(match.group(4) or "", "get file")
        match = _ASSIGN.match(path)
        if match:
            return "assign" if match.group(2) == "assign" else "assignments"
        return "unknown"

    def _handle(
        self, step: str, method: str, path: str, query: str, headers: dict[str, str], body: bytes | Path
    ) -> tuple[int, Any]:
        if step == "block":
            return self._blob(step, path, query, headers, body)
        if isinstance(body, Path):
            return 413, {"error": {"code": "RequestEntityTooLarge", "message": f"{step}: body too large"}}
        if step == "token":
            return self._token(body)
        if step in ("blocklist", "blob"):
            return self._blob(step, path, query, headers, body)
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}
        if step == "find":
            return self._find(query)
        if step == "create":
            created = json.loads(body)
            app_id = self._new_id("app")
            self.apps[app_id] = {**created, "id": app_id, "committedContentVersion": None}
            return 201, self.apps[app_id]
        match = _APP.match(path)
        if match:
            app = self.apps.get(match.group(1))
            if app is None:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such app"}}
            if step == "patch":
                update = json.loads(body)
                version = update.get("committedContentVersion")
                if version is not None and not any(
                    f.upload_state == "commitFileSuccess" for f in self.files[(app["id"], version)]
                ):
                    return 400, {"error": {"code": "BadRequest", "message": f"content version {version} not committed"}}
                app.update({k: v for k, v in update.items() if k != "@odata.type"})
                return 204, None
            return self._select(app, parse_qs(query))
        match = _VERSIONS.match(path)
        if match:
            app_id = match.group(1)
            if app_id not in self.apps:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such app"}}
            if step == "versions":
                return 200, {"value": [{"id": v} for v in self.versions[app_id]]}
            version = str(len(self.versions[app_id]) + 1)
            self.versions[app_id].append(version)
            return 201, {"id": version}
        match = _FILES.match(path)
        if match:
            key = (match.group(1), match.group(2))
            if match.group(2) not in self.versions[match.group(1)]:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such content version"}}
            if step == "version files":
                return 200, {"value": [self._file_doc(f) for f in self.files[key]]}
            spec = json.loads(body)
            file_id = self._new_id("file")
            state = ContentFileState(
                id=file_id,
                name=spec["name"],
                size=spec["size"],
                size_encrypted=spec["sizeEncrypted"],
                blob=f"{key[0]}-{key[1]}-{file_id}",
                polls_left=self.pending_polls,
            )
            self.files[key].append(state)
            return 201, self._file_doc(state)
        match = _FILE.match(path)
        if match:
            key = (match.group(1), match.group(2))
            found = [f for f in self.files[key] if f.id == match.group(3)]
            if not found:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such file"}}
            state = found[0]
            if step == "renew":
                if state.upload_state not in ("azureStorageUriRequestSuccess", "azureStorageUriRenewalSuccess"):
                    return 400, {"error": {"code": "BadRequest", "message": f"cannot renew in {state.upload_state}"}}
                state.upload_state = "azureStorageUriRenewalPending"
                state.polls_left = self.pending_polls
                return 204, None
            if step == "commit":
                state.encryption_info = json.loads(body)["fileEncryptionInfo"]
                state.upload_state = "commitFilePending"
                state.polls_left = (
                    self.pending_polls if self.commit_pending_polls is None else self.commit_pending_polls
                )
                return 200, None
            self._advance(state)
            return 200, self._file_doc(state)
        match = _ASSIGN.match(path)
        if match:
            app_id = match.group(1)
            if app_id not in self.apps:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such app"}}
            if step == "assignments":
                return 200, {"value": self.assignments.get(app_id, [])}
            items = json.loads(body)["mobileAppAssignments"]
            self.assignments[app_id] = [{**item, "id": f"{app_id}_{n}"} for n, item in enumerate(items)]
            return 204, None
        return 404, {"error": {"code": "ResourceNotFound", "message": path}}

    def _token(self, body: bytes) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "expected client_credentials"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        if form.get("scope") != SCOPE:
            return 400, {"error": "invalid_scope", "error_description": f"AADSTS70011: expected scope {SCOPE}"}
        return 200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3599}

    @staticmethod
    def _selected(params: dict[str, list[str]]) -> list[str] | tuple[int, Any] | None:
        if "$select" not in params:
            return None
        names = [n.strip() for n in params["$select"][0].split(",") if n.strip()]
        unknown = [n for n in names if n not in MOBILE_APP_PROPERTIES]
        if unknown:
            message = f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.mobileApp'."
            return 400, {"error": {"code": "BadRequest", "message": message}}
        return names

    def _select(self, app: dict[str, Any], params: dict[str, list[str]]) -> tuple[int, Any]:
        names = self._selected(params)
        if isinstance(names, tuple):
            return names
        return 200, self._project(app, names)

    @staticmethod
    def _project(app: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        if names is None:
            return app
        return {"@odata.type": app.get("@odata.type"), **{n: app.get(n) for n in names}}

    def _find(self, query: str) -> tuple[int, Any]:
        params = parse_qs(query)
        filter_ = params.get("$filter", [""])[0]
        names = self._selected(params)
        if isinstance(names, tuple):
            return names
        kinds = _ISOF.findall(filter_)
        match = _NAME_FILTER.search(filter_)
        name = match.group(1).replace("''", "'") if match else None
        apps = [
            a
            for a in self.apps.values()
            if (name is None or a.get("displayName") == name)
            and (not kinds or a.get("@odata.type") in {f"#microsoft.graph.{k}" for k in kinds})
        ]
        top = min(int(params.get("$top", [str(self.page_size)])[0]), self.page_size)
        skip = int(params.get("$skiptoken", ["0"])[0])
        page = apps[skip : skip + top]
        doc: dict[str, Any] = {"value": [self._project(a, names) for a in page]}
        if skip + top < len(apps):
            kept = "&".join(
                f"{k}={quote(v[0], safe=',')}" for k, v in params.items() if k in ("$filter", "$select", "$top")
            )
            doc["@odata.nextLink"] = f"{self.base}/deviceAppManagement/mobileApps?{kept}&$skiptoken={skip + top}"
        return 200, doc

    def _advance(self, state: ContentFileState) -> None:
        pending = ("azureStorageUriRequestPending", "azureStorageUriRenewalPending", "commitFilePending")
        if state.upload_state in pending and state.polls_left > 0:
            state.polls_left -= 1
            return
        if state.upload_state == "azureStorageUriRequestPending":
            state.upload_state = "azureStorageUriRequestSuccess"
        elif state.upload_state == "azureStorageUriRenewalPending":
            # a renewed URL: a new signature, the old one no longer accepted
            state.renewals += 1
            blob = self.blobs[state.blob]
            blob.sig = f"{SAS_SIG}r{state.renewals}"
            blob.puts_since_renewal = 0
            state.upload_state = "azureStorageUriRenewalSuccess"
        elif state.upload_state == "commitFilePending":
            state.upload_state = self._judge_commit(state)

    def _judge_commit(self, state: ContentFileState) -> str:
        blob = self.blobs[state.blob].committed
        if blob is None or state.encryption_info is None:
            state.commit_error = "no committed blob"
            return "commitFileFailed"
        sizes = {"size": state.size, "size_encrypted": state.size_encrypted}
        try:
            if isinstance(blob, Path):
                plain = self.spill_path()
                verify_intunewin_file(blob, state.encryption_info, **sizes, plain_to=plain)
                state.plain = plain
            else:
                verify_intunewin(blob, state.encryption_info, **sizes)
        except IntunewinError as exc:
            state.commit_error = str(exc)
            return "commitFileFailed"
        return "commitFileSuccess"

    def _file_doc(self, state: ContentFileState) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.mobileAppContentFile",
            "id": state.id,
            "name": state.name,
            "size": state.size,
            "sizeEncrypted": state.size_encrypted,
            "isCommitted": state.upload_state == "commitFileSuccess",
            "uploadState": state.upload_state,
            "azureStorageUri": None,
        }
        if state.upload_state != "azureStorageUriRequestPending":
            sig = self.blobs[state.blob].sig
            doc["azureStorageUri"] = f"{self.origin}/blob/{state.blob}?sv=2024-08-04&sr=b&sp=rcw&sig={sig}"
        return doc

    def decrypted(self, app_id: str, version: str) -> bytes:
        """The plain package committed into ``version`` of ``app_id`` (decrypted like Intune does)."""
        (state,) = [f for f in self.files[(app_id, version)] if f.upload_state == "commitFileSuccess"]
        blob = self.blobs[state.blob].committed
        assert blob is not None and state.encryption_info is not None
        if isinstance(blob, Path):
            target = self.spill_path()
            self.decrypted_to(app_id, version, target)
            return target.read_bytes()
        return verify_intunewin(blob, state.encryption_info, size=state.size, size_encrypted=state.size_encrypted)

    def package_file(self, app_id: str, version: str) -> Path:
        """The plain package committed into ``version`` of ``app_id``, as a file (for a blob on disk:
        the one the judge decrypted at commit; otherwise decrypted now)."""
        (state,) = [f for f in self.files[(app_id, version)] if f.upload_state == "commitFileSuccess"]
        if state.plain is not None:
            return state.plain
        target = self.spill_path()
        self.decrypted_to(app_id, version, target)
        return target

    def decrypted_to(self, app_id: str, version: str, target: Path) -> str:
        """Write the plain package committed into ``version`` of ``app_id`` to ``target`` (streamed,
        whatever its size); its SHA-256."""
        (state,) = [f for f in self.files[(app_id, version)] if f.upload_state == "commitFileSuccess"]
        blob = self.blobs[state.blob].committed
        assert blob is not None and state.encryption_info is not None
        if not isinstance(blob, Path):
            plain = verify_intunewin(blob, state.encryption_info, size=state.size, size_encrypted=state.size_encrypted)
            target.write_bytes(plain)
            return hashlib.sha256(plain).hexdigest()
        return verify_intunewin_file(
            blob, state.encryption_info, size=state.size, size_encrypted=state.size_encrypted, plain_to=target
        )

    def _blob(self, step: str, path: str, query: str, headers: dict[str, str], body: bytes | Path) -> tuple[int, Any]:
        params = parse_qs(query)
        match = _BLOB.match(path)
        assert match is not None
        blob = self.blobs[match.group(1)]
        if params.get("sig", [""])[0] != blob.sig:
            return 403, {"error": "AuthenticationFailed", "message": "Signature did not match"}
        limit = self.expire_sas_after_blocks
        if limit is not None and blob.puts_since_renewal >= limit:
            return 403, {"error": "AuthenticationFailed", "message": "Signed expiry time has passed"}
        if step == "block":
            block = params.get("blockid", [""])[0]
            try:
                base64.b64decode(block, validate=True)
            except binascii.Error:
                block = ""
            if not block or any(len(other) != len(block) for other in blob.blocks):
                return 400, {"error": f"InvalidQueryParameterValue blockid {block!r}: base64, one length per blob"}
            blob.blocks[block] = body
            blob.block_puts += 1
            blob.puts_since_renewal += 1
            return 201, None
        if step == "blocklist":
            assert isinstance(body, bytes)
            ids = re.findall(r"<Latest>([^<]+)</Latest>", body.decode())
            missing = [i for i in ids if i not in blob.blocks]
            if missing:
                return 400, {"error": f"InvalidBlockList {missing}"}
            parts = [blob.blocks[i] for i in ids]
            total = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in parts)
            if total <= self.spill_bytes and all(isinstance(p, bytes) for p in parts):
                blob.committed = b"".join(p for p in parts if isinstance(p, bytes))
                return 201, None
            committed = self.spill_path()
            with committed.open("wb") as target:
                for part in parts:
                    if isinstance(part, bytes):
                        target.write(part)
                        continue
                    with part.open("rb") as source:
                        shutil.copyfileobj(source, target, _CHUNK)
            blob.committed = committed
            return 201, None
        return 400, {"error": "unsupported blob operation"}
