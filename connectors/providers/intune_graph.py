"""Native Microsoft Intune publication through Microsoft Graph: a ``win32LobApp`` with uploaded content.

The destination ``url`` is the Graph base (``https://graph.microsoft.com/v1.0``). Authentication is
an Entra app registration (``client_id`` + ``client_secret`` + ``tenant_id`` or ``token_url``)
with the client-credentials scope ``https://graph.microsoft.com/.default`` (the app needs
``DeviceManagementApps.ReadWrite.All``).

One delivery is this conversation (every call through :func:`connectors.interface.exchange`;
``{app}`` = ``/deviceAppManagement/mobileApps/{id}``, ``{cv}`` =
``{app}/microsoft.graph.win32LobApp/contentVersions``)::

    GET   /deviceAppManagement/mobileApps?$filter=isof(..) and displayName eq '..'  find win32LobApp (+nextLink)
    GET   {app}/assignments                         check assignments   (committed app, groups configured)
    POST  /deviceAppManagement/mobileApps            create win32LobApp  (no app with the event marker)
    GET   {cv}  /  GET {cv}/{v}/files                 find content        (resume: committed file, not set)
    POST  {cv}                                        create content version
    POST  {cv}/{v}/files                              create content file
    GET   {cv}/{v}/files/{f}                          wait for upload URI (azureStorageUriRequestSuccess)
    PUT   <SAS>&comp=block&blockid=..  (per block)    upload block        (Azure Blob, no Graph token)
    PUT   <SAS>&comp=blocklist                        commit block list
    POST  {cv}/{v}/files/{f}/commit                   commit content file (fileEncryptionInfo)
    GET   {cv}/{v}/files/{f}                          wait for commit     (commitFileSuccess)
    PATCH {app}                                       set committedContentVersion
    POST  {app}/assign                                assign              (target_group_ids only)

Why it is shaped this way:

- The engine re-runs :meth:`IntuneGraph.publish` after any failed call (and a later run may repeat
  a delivery whose answer was lost), so nothing is created twice: the app is found by its
  ``notes`` marker ``ringward-event:<event_id>`` (Graph cannot filter on ``notes``, so the lookup
  filters by type and display name and matches the marker client-side). An app whose
  ``committedContentVersion`` is set is finished (``exists``); a content file an earlier attempt
  committed is reused (only the PATCH is repeated); anything less is uploaded again into a new
  content version, because the encryption keys of the earlier attempt are gone (Intune ignores
  content versions that are never committed).
- The content is what IntuneWinAppUtil makes: a zip of the setup files, AES-256-CBC encrypted with
  fresh keys and prefixed by ``HMAC-SHA256(macKey, IV || ciphertext) || IV``
  (:func:`encrypt_content`, :func:`decrypt_content`). The zip is deterministic (sorted names, fixed
  timestamps), so its size identifies a committed upload of the same files.
- The files are read from the destination's ``artifact_root`` and checked against the event's
  size and SHA-256 before anything is sent to Graph; a mismatch, a missing file or a path that
  leaves the root (absolute, ``..``, a symlink anywhere on the path) is a final failure.
- The Azure Blob SAS URL Graph hands out is a credential: its ``sig`` goes to the destination's
  scrubber the moment it arrives, blob requests never carry the Graph token nor the destination's
  extra headers, and an upload URL is accepted only over https (plain http only on loopback).
- An app without ``target_group_ids`` is left unassigned, for review in Intune before assignment
  (reference control ``endpoint-tool-import-review-required``). With groups, ``/assign`` sets the
  app's whole assignment set to those groups as ``required``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from connectors.artifacts import ArtifactError, read_artifact
from connectors.auth import TOKENS, entra_token_url
from connectors.interface import (
    JSON,
    USER_AGENT,
    Exchange,
    PreparedRequest,
    Provider,
    Publication,
    TimeLeft,
    dumps_body,
    exchange,
)
from connectors.providers._common import bearer_or_authorization
from connectors.secrets import ResolvedDestination
from ringward.core.connector_config import ProviderKind, check_url
from ringward.core.connector_event import TEST_EVENT_TYPE, ConnectorEvent
from ringward.core.delivery_policy import Outcome
from ringward.core.errors import ConnectorEventError
from ringward.core.intune_publication import (
    IntunePublication,
    has_intune_payload,
    parse_intune_publication,
)
from ringward.core.redaction import excerpt, redact_url

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: largest Azure Blob block Ringward sends (tests lower it to exercise several blocks)
BLOCK_BYTES = 6 * 1024 * 1024
#: seconds between two upload-state polls (never more than the attempt has left)
POLL_INTERVAL_SECONDS = 1.0
#: upload-state polls per wait before the attempt gives up (retried as a whole)
MAX_POLLS = 60
#: how polls wait; tests replace it so they never sleep for real
SLEEP: Callable[[float], None] = time.sleep
#: pages of app search results followed at most
MAX_PAGES = 20
PROFILE = "ProfileVersion1"
_ERROR_LIMIT = 200
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class ContentIntegrityError(Exception):
    """Encrypted content whose MAC or digest does not match its ``fileEncryptionInfo``."""


class RefusedAnswer(Exception):
    """A Graph answer Ringward will not act on (no usable id, a nextLink to another host, a bad SAS URL)."""


# -- content: read, package, encrypt -------------------------------------------------------------------


def build_zip(files: Sequence[tuple[str, bytes]]) -> bytes:
    """The setup folder as a zip, byte-for-byte the same for the same files.

    Names are sorted and every entry has a fixed timestamp and mode, so a re-run can recognise an
    upload it already committed by the package's size.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 0
            archive.writestr(info, data)
    return buffer.getvalue()


@dataclass(frozen=True)
class EncryptedContent:
    """An ``.intunewin`` payload: the bytes to upload and what Graph needs to decrypt them."""

    data: bytes
    #: ``fileEncryptionInfo`` of the commit call (base64 values)
    encryption_info: dict[str, str]
    #: size of the unencrypted package (``size`` of the content file)
    size: int

    @property
    def size_encrypted(self) -> int:
        return len(self.data)


def encrypt_content(
    plain: bytes, *, key: bytes | None = None, mac_key: bytes | None = None, iv: bytes | None = None
) -> EncryptedContent:
    """Encrypt a package the way IntuneWinAppUtil does.

    AES-256-CBC with PKCS7 padding under a random 32-byte key and 16-byte IV; output =
    ``HMAC-SHA256(macKey, IV || ciphertext) || IV || ciphertext`` with a random 32-byte MAC key.
    The keys are arguments only so tests can fix them; callers leave them random.
    """
    key = key if key is not None else os.urandom(32)
    mac_key = mac_key if mac_key is not None else os.urandom(32)
    iv = iv if iv is not None else os.urandom(16)
    if (len(key), len(mac_key), len(iv)) != (32, 32, 16):
        raise ValueError(f"expected key/mac key/IV of 32/32/16 bytes, found {len(key)}/{len(mac_key)}/{len(iv)}")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, iv + ciphertext, hashlib.sha256).digest()

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    info = {
        "encryptionKey": b64(key),
        "macKey": b64(mac_key),
        "initializationVector": b64(iv),
        "mac": b64(mac),
        "profileIdentifier": PROFILE,
        "fileDigest": b64(hashlib.sha256(plain).digest()),
        "fileDigestAlgorithm": "SHA256",
    }
    return EncryptedContent(mac + iv + ciphertext, info, len(plain))


def decrypt_content(data: bytes, info: Mapping[str, Any]) -> bytes:
    """The package inside an ``.intunewin`` payload, after checking its MAC, IV and digest.

    What Intune does on commit; used by tests and the Graph emulator to prove an upload is usable.

    Raises:
        ContentIntegrityError: one line saying which check failed (expected vs found).
    """
    try:
        key = base64.b64decode(str(info["encryptionKey"]), validate=True)
        mac_key = base64.b64decode(str(info["macKey"]), validate=True)
        iv = base64.b64decode(str(info["initializationVector"]), validate=True)
        mac = base64.b64decode(str(info["mac"]), validate=True)
        digest = base64.b64decode(str(info["fileDigest"]), validate=True)
    except (KeyError, ValueError) as exc:
        raise ContentIntegrityError(f"expected base64 fileEncryptionInfo fields, found a bad value ({exc})") from exc
    if info.get("profileIdentifier") != PROFILE or info.get("fileDigestAlgorithm") != "SHA256":
        raise ContentIntegrityError(
            f"expected profile {PROFILE}/SHA256, "
            f"found {info.get('profileIdentifier')}/{info.get('fileDigestAlgorithm')}"
        )
    if len(key) != 32 or len(data) < 48 + 16 or (len(data) - 48) % 16:
        raise ContentIntegrityError(f"expected a 32-byte key and MAC+IV+AES blocks, found {len(data)} bytes")
    found_mac, found_iv, ciphertext = data[:32], data[32:48], data[48:]
    computed = hmac.new(mac_key, found_iv + ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(computed, found_mac) or not hmac.compare_digest(found_mac, mac):
        raise ContentIntegrityError("expected the HMAC-SHA256 of IV and ciphertext to match, found a different MAC")
    if found_iv != iv:
        raise ContentIntegrityError("expected the IV of fileEncryptionInfo, found a different IV")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise ContentIntegrityError("expected PKCS7 padding, found invalid padding") from exc
    found_digest = hashlib.sha256(plain).digest()
    if not hmac.compare_digest(found_digest, digest):
        raise ContentIntegrityError(
            f"expected fileDigest {base64.b64encode(digest).decode()}, found {base64.b64encode(found_digest).decode()}"
        )
    return plain


def block_id(index: int) -> str:
    """Azure block id n: base64 of a fixed-length string (every id of a blob must have the same length)."""
    return base64.b64encode(f"ringward-block-{index:08d}".encode("ascii")).decode("ascii")


def block_list_xml(ids: Sequence[str]) -> bytes:
    """The ``Put Block List`` body naming the uploaded blocks in order."""
    latest = "".join(f"<Latest>{i}</Latest>" for i in ids)
    return f'<?xml version="1.0" encoding="utf-8"?><BlockList>{latest}</BlockList>'.encode()


def odata_string(value: str) -> str:
    """An OData string literal: single-quoted, embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def graph_error(answer: Exchange) -> str:
    """A short excerpt of a Graph error (``{"error": {"code", "message"}}``) or of the body."""
    data = answer.json()
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        text = f"{error.get('code') or 'error'}: {error.get('message') or ''}".rstrip(": ")
        return excerpt(text, limit=_ERROR_LIMIT)
    return excerpt(answer.text, limit=_ERROR_LIMIT)


def _graph_id(value: object, what: str) -> str:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text or len(text) > 128 or not set(text) <= _ID_CHARS or text.startswith("."):
        raise RefusedAnswer(f"expected a Graph {what} id [A-Za-z0-9._-], found {str(value)[:40]!r}")
    return text


def _object(answer: Exchange, what: str) -> dict[str, Any]:
    data = answer.json()
    if not isinstance(data, dict):
        raise RefusedAnswer(f"expected a JSON object ({what}), found {excerpt(answer.text, limit=60)!r}")
    return data


def _values(answer: Exchange, what: str) -> list[dict[str, Any]]:
    values = _object(answer, what).get("value")
    if not isinstance(values, list):
        raise RefusedAnswer(
            f"expected a Graph collection with value[] ({what}), found {excerpt(answer.text, limit=60)!r}"
        )
    return [v for v in values if isinstance(v, dict)]


# -- the conversation ------------------------------------------------------------------------------------


@dataclass
class _Conversation:
    """One run of the publication conversation; remembers every call for the Publication."""

    dest: ResolvedDestination
    client: httpx.Client
    auth: Mapping[str, str]
    left: TimeLeft
    calls: list[tuple[str, str, str, int]] = field(default_factory=list)
    #: the latest call and its step name (an unreadable answer is reported against it)
    last: tuple[str, Exchange] | None = None

    @property
    def base(self) -> str:
        return self.dest.url.rstrip("/")

    def graph(self, step: str, method: str, target: str, body: Any = None) -> Exchange:
        """A Graph call: ``target`` is a path under the base, or a full URL on the base's origin."""
        headers = {"accept": JSON, "user-agent": USER_AGENT}
        headers.update(self.dest.headers)
        content = b""
        if body is not None:
            content = dumps_body(body)
            headers["content-type"] = JSON
        headers.update(self.auth)
        url = target if target.startswith(("https://", "http://")) else self.base + target
        return self._send(step, PreparedRequest(method=method, url=url, headers=headers, content=content))

    def blob(self, step: str, url: str, content: bytes, headers: Mapping[str, str]) -> Exchange:
        """An Azure Blob call: the SAS in the URL authenticates; no Graph token, no configured headers."""
        sent = {"user-agent": USER_AGENT, **headers}
        return self._send(step, PreparedRequest(method="PUT", url=url, headers=sent, content=content))

    def _send(self, step: str, request: PreparedRequest) -> Exchange:
        answer = exchange(self.client, request, self.left)
        self.calls.append((step, request.method, redact_url(request.url), answer.status_code))
        self.last = (step, answer)
        return answer

    def done(self, step: str, answer: Exchange, app_id: str, outcome: Outcome | None = None) -> Publication:
        return Publication(last=answer, step=step, outcome=outcome, external_ref=app_id, calls=tuple(self.calls))

    def failed(
        self, step: str, answer: Exchange, *, error: str | None = None, outcome: Outcome | None = None
    ) -> Publication:
        """The Publication for a call that went wrong (the engine classifies its status unless ``outcome``)."""
        detail = error if error is not None else graph_error(answer)
        return Publication(
            last=answer, step=step, outcome=outcome, error=self.dest.scrubber.scrub(detail), calls=tuple(self.calls)
        )

    def not_sent(self, step: str, error: str) -> Publication:
        """A final failure found before sending (bad payload, bad artifact): nothing reached the tool."""
        return Publication.not_sent(step, self.dest.scrubber.scrub(error), calls=tuple(self.calls))


@dataclass(frozen=True)
class _App:
    id: str
    committed: bool


class IntuneGraph(Provider):
    """Publishes Intune export payloads as Win32 apps through Microsoft Graph (``mode: native``)."""

    kind = ProviderKind.INTUNE

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        """The ``win32LobApp`` create body (what a single-request preview would show)."""
        try:
            return dumps_body(parse_intune_publication(events[0]).win32_lob_app())
        except ConnectorEventError:
            return b"{}"

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        """Entra client credentials for Graph (the same token cache as Sentinel and the relay mode)."""
        if dest.config.client_id and "client_secret" in dest.secrets:
            token = TOKENS.get(
                client, dest, token_url=entra_token_url(dest), scope=dest.config.scope or GRAPH_SCOPE, timeout=timeout
            )
            return {"authorization": f"Bearer {token}"}
        return bearer_or_authorization(dest)

    def accepts(self, event: ConnectorEvent, dest: ResolvedDestination) -> bool:
        """Events carrying an Intune export payload, and ``ringward connectors test`` (a read-only check)."""
        return has_intune_payload(event) or event.event_type == TEST_EVENT_TYPE

    def publish(
        self,
        event: ConnectorEvent,
        dest: ResolvedDestination,
        client: httpx.Client,
        auth: dict[str, str],
        *,
        left: TimeLeft,
        now: datetime,
    ) -> Publication:
        talk = _Conversation(dest, client, auth, left)
        if event.event_type == TEST_EVENT_TYPE:
            # token plus one read of the apps this publisher manages: proves URL, credentials and the
            # DeviceManagementApps permission without changing anything
            query = "$filter=" + quote("isof('microsoft.graph.win32LobApp')", safe="'()") + "&$top=1&$select=id"
            answer = talk.graph("connectivity check", "GET", f"/deviceAppManagement/mobileApps?{query}")
            if not answer.ok:
                return talk.failed("connectivity check", answer)
            return Publication(
                last=answer,
                step="connectivity check",
                external_ref="Graph mobileApps readable",
                calls=tuple(talk.calls),
            )
        try:
            publication = parse_intune_publication(event)
        except ConnectorEventError as exc:
            return talk.not_sent("read intune payload", str(exc))
        root = dest.config.artifact_root
        if root is None:
            return talk.not_sent(
                "verify artifact",
                f"destination {dest.name}: expected artifact_root to read the content from, found none",
            )
        try:
            files = [(item.artifact, read_artifact(root, item)) for item in publication.content]
        except ArtifactError as exc:
            return talk.not_sent("verify artifact", str(exc))
        package = build_zip(files)
        try:
            return self._converse(talk, publication, package)
        except RefusedAnswer as exc:
            assert talk.last is not None  # only answers are refused, so a call was made
            step, answer = talk.last
            return talk.failed(step, answer, error=str(exc), outcome=Outcome.REJECTED)

    def _converse(self, talk: _Conversation, publication: IntunePublication, package: bytes) -> Publication:
        found = self._find_app(talk, publication)
        if isinstance(found, Publication):
            return found
        app, answer = found
        if app is not None and app.committed:
            return self._assign(talk, app.id, answer, "find win32LobApp", already=True)
        if app is None:
            created = talk.graph(
                "create win32LobApp", "POST", "/deviceAppManagement/mobileApps", publication.win32_lob_app()
            )
            if not created.ok:
                return talk.failed("create win32LobApp", created)
            app = _App(_graph_id(_object(created, "created app").get("id"), "app"), committed=False)
        versions = f"/deviceAppManagement/mobileApps/{app.id}/microsoft.graph.win32LobApp/contentVersions"
        version = self._committed_version(talk, versions, publication, len(package))
        if isinstance(version, Publication):
            return version
        if version is None:
            uploaded = self._upload(talk, versions, publication, package)
            if isinstance(uploaded, Publication):
                return uploaded
            version = uploaded
        step = "set committedContentVersion"
        patched = talk.graph(
            step,
            "PATCH",
            f"/deviceAppManagement/mobileApps/{app.id}",
            {"@odata.type": "#microsoft.graph.win32LobApp", "committedContentVersion": version},
        )
        if not patched.ok:
            return talk.failed(step, patched)
        return self._assign(talk, app.id, patched, step, already=False)

    # -- steps ----------------------------------------------------------------------------------------
    # Each returns what it found or made, or the Publication of the call that failed.

    def _find_app(
        self, talk: _Conversation, publication: IntunePublication
    ) -> tuple[_App | None, Exchange] | Publication:
        step = "find win32LobApp"
        filter_ = f"isof('microsoft.graph.win32LobApp') and displayName eq {odata_string(publication.app.display_name)}"
        target = f"/deviceAppManagement/mobileApps?$filter={quote(filter_, safe='')}"
        origin = urlsplit(talk.base)
        matches: list[_App] = []
        answer: Exchange | None = None
        for _page in range(MAX_PAGES):
            answer = talk.graph(step, "GET", target)
            if not answer.ok:
                return talk.failed(step, answer)
            for item in _values(answer, "apps"):
                if publication.has_marker(item.get("notes")):
                    matches.append(_App(_graph_id(item.get("id"), "app"), bool(item.get("committedContentVersion"))))
            next_link = _object(answer, "apps").get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                break
            parts = urlsplit(next_link)
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                # the bearer token goes only to the configured Graph host
                raise RefusedAnswer(
                    f"expected @odata.nextLink on {origin.scheme}://{origin.netloc}, found {redact_url(next_link)}"
                )
            target = next_link
        else:
            raise RefusedAnswer(f"expected at most {MAX_PAGES} pages of apps named {publication.app.display_name!r}")
        assert answer is not None
        committed = [m for m in matches if m.committed]
        chosen = committed or matches
        return (chosen[0] if chosen else None), answer

    def _committed_version(
        self, talk: _Conversation, versions: str, publication: IntunePublication, size: int
    ) -> str | Publication | None:
        """The latest content version if an earlier attempt committed this package's file into it."""
        step = "find content version"
        listed = talk.graph(step, "GET", versions)
        if not listed.ok:
            return talk.failed(step, listed)
        ids = [_graph_id(v.get("id"), "content version") for v in _values(listed, "content versions")]
        if not ids:
            return None
        latest = max(ids, key=lambda v: (len(v), v))  # Graph numbers content versions 1, 2, ...
        step = "find content file"
        files = talk.graph(step, "GET", f"{versions}/{latest}/files")
        if not files.ok:
            return talk.failed(step, files)
        for item in _values(files, "content files"):
            committed = item.get("isCommitted") is True or item.get("uploadState") == "commitFileSuccess"
            if committed and item.get("name") == publication.file_name and item.get("size") == size:
                return latest
        return None

    def _upload(
        self, talk: _Conversation, versions: str, publication: IntunePublication, package: bytes
    ) -> str | Publication:
        """Create a content version, upload the encrypted package into it and commit it; its id."""
        step = "create content version"
        created = talk.graph(step, "POST", versions, {})
        if not created.ok:
            return talk.failed(step, created)
        version = _graph_id(_object(created, "content version").get("id"), "content version")
        content = encrypt_content(package)
        step = "create content file"
        made = talk.graph(
            step,
            "POST",
            f"{versions}/{version}/files",
            {
                "@odata.type": "#microsoft.graph.mobileAppContentFile",
                "name": publication.file_name,
                "size": content.size,
                "sizeEncrypted": content.size_encrypted,
                "manifest": None,
                "isDependency": False,
            },
        )
        if not made.ok:
            return talk.failed(step, made)
        file_path = f"{versions}/{version}/files/{_graph_id(_object(made, 'content file').get('id'), 'content file')}"
        ready = self._wait(
            talk,
            "wait for upload URI",
            file_path,
            want="azureStorageUriRequestSuccess",
            failed="azureStorageUriRequestFailed",
            failed_outcome=Outcome.RETRY,
        )
        if isinstance(ready, Publication):
            return ready
        sas = self._sas_url(talk, ready)
        uploaded = self._put_blocks(talk, sas, content.data)
        if uploaded is not None:
            return uploaded
        step = "commit content file"
        committed = talk.graph(
            step,
            "POST",
            f"{file_path}/commit",
            {"fileEncryptionInfo": {"@odata.type": "microsoft.graph.fileEncryptionInfo", **content.encryption_info}},
        )
        if not committed.ok:
            return talk.failed(step, committed)
        done = self._wait(
            talk,
            "wait for commit",
            file_path,
            want="commitFileSuccess",
            failed="commitFileFailed",
            failed_outcome=Outcome.REJECTED,
        )
        if isinstance(done, Publication):
            return done
        return version

    def _wait(
        self,
        talk: _Conversation,
        step: str,
        file_path: str,
        *,
        want: str,
        failed: str,
        failed_outcome: Outcome,
    ) -> Exchange | Publication:
        """Poll the content file until its ``uploadState`` is ``want`` (bounded by polls and the deadline)."""
        state: object = None
        answer: Exchange | None = None
        for _poll in range(MAX_POLLS):
            answer = talk.graph(step, "GET", file_path)
            if not answer.ok:
                return talk.failed(step, answer)
            data = _object(answer, "content file")
            uri = data.get("azureStorageUri")
            if isinstance(uri, str):
                _register_sas(talk.dest, uri)
            state = data.get("uploadState")
            if state == want:
                return answer
            if state == failed:
                return talk.failed(
                    step, answer, error=f"expected uploadState {want}, found {state}", outcome=failed_outcome
                )
            SLEEP(min(POLL_INTERVAL_SECONDS, talk.left() / 2))
        assert answer is not None
        return talk.failed(
            step,
            answer,
            error=f"expected uploadState {want} within {MAX_POLLS} polls, found {str(state)[:60]}",
            outcome=Outcome.RETRY,
        )

    @staticmethod
    def _sas_url(talk: _Conversation, ready: Exchange) -> str:
        uri = _object(ready, "content file").get("azureStorageUri")
        if not isinstance(uri, str) or not uri:
            raise RefusedAnswer("expected azureStorageUri with uploadState azureStorageUriRequestSuccess, found none")
        try:
            check_url(uri, allow_query_secrets=True)
        except ValueError as exc:
            raise RefusedAnswer(f"expected an https azureStorageUri, found {redact_url(uri)} ({exc})") from exc
        return uri

    @staticmethod
    def _put_blocks(talk: _Conversation, sas: str, data: bytes) -> Publication | None:
        """Azure Blob ``Put Block`` per chunk, then ``Put Block List``; None when all succeeded."""
        joiner = "&" if urlsplit(sas).query else "?"
        ids: list[str] = []
        for index, start in enumerate(range(0, len(data), BLOCK_BYTES)):
            ident = block_id(index)
            step = f"upload block {index}"
            answer = talk.blob(
                step,
                f"{sas}{joiner}comp=block&blockid={quote(ident, safe='')}",
                data[start : start + BLOCK_BYTES],
                {"x-ms-blob-type": "BlockBlob", "content-type": "application/octet-stream"},
            )
            if not answer.ok:
                return talk.failed(step, answer)
            ids.append(ident)
        step = "commit block list"
        answer = talk.blob(
            step, f"{sas}{joiner}comp=blocklist", block_list_xml(ids), {"content-type": "application/xml"}
        )
        if not answer.ok:
            return talk.failed(step, answer)
        return None

    @staticmethod
    def _assign(talk: _Conversation, app_id: str, previous: Exchange, step: str, *, already: bool) -> Publication:
        """Assign the app to the configured groups (none: leave it for review); the final Publication.

        For an app an earlier run finished, the assignments are checked first, so a run that failed
        only at assignment is completed rather than reported as existing.
        """
        groups = talk.dest.config.target_group_ids
        outcome = Outcome.EXISTS if already else None
        if not groups:
            return talk.done(step, previous, app_id, outcome)
        app_path = f"/deviceAppManagement/mobileApps/{app_id}"
        if already:
            check = "check assignments"
            answer = talk.graph(check, "GET", f"{app_path}/assignments")
            if not answer.ok:
                return talk.failed(check, answer)
            assigned = {
                (a.get("target") or {}).get("groupId")
                for a in _values(answer, "assignments")
                if isinstance(a.get("target"), dict) and a.get("intent") == "required"
            }
            if set(groups) <= assigned:
                return talk.done(step, previous, app_id, Outcome.EXISTS)
        assign = "assign"
        body = {
            "mobileAppAssignments": [
                {
                    "@odata.type": "#microsoft.graph.mobileAppAssignment",
                    "intent": "required",
                    "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group},
                }
                for group in groups
            ]
        }
        answer = talk.graph(assign, "POST", f"{app_path}/assign", body)
        if not answer.ok:
            return talk.failed(assign, answer)
        return talk.done(assign, answer, app_id)


def _register_sas(dest: ResolvedDestination, uri: str) -> None:
    """Register an upload URL's signature (and whole query) with the scrubber before it is used."""
    try:
        query = urlsplit(uri).query
    except ValueError:
        return
    if query:
        dest.scrubber.add(query)
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.lower() == "sig" and value:
            dest.scrubber.add(value)
