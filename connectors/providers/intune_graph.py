"""Native Microsoft Intune publication through Microsoft Graph: a ``win32LobApp`` with uploaded content.

The destination ``url`` is the Graph base (``https://graph.microsoft.com/v1.0``). Authentication is
an Entra app registration (``client_id`` + ``client_secret`` + ``tenant_id`` or ``token_url``)
with the client-credentials scope ``https://graph.microsoft.com/.default`` (the app needs
``DeviceManagementApps.ReadWrite.All``).

One delivery is this conversation (every call through :func:`connectors.interface.exchange`;
``{app}`` = ``/deviceAppManagement/mobileApps/{id}``, ``{cv}`` =
``{app}/microsoft.graph.win32LobApp/contentVersions``)::

    GET   /deviceAppManagement/mobileApps?$filter=isof(..)&$select=id,displayName,notes&$top=100
                                                      find apps            (+ @odata.nextLink pages)
    GET   {app}                                       get the event's app  (committedContentVersion)
    POST  /deviceAppManagement/mobileApps            create win32LobApp   (no app with the event marker)
    GET   {cv}  /  GET {cv}/{v}/files  (per version)  find content         (resume, newest version first)
    POST  {cv}                                        create content version
    POST  {cv}/{v}/files                              create content file
    GET   {cv}/{v}/files/{f}                          wait for upload URI  (azureStorageUriRequestSuccess)
    PUT   <SAS>&comp=block&blockid=..  (per block)    upload block         (Azure Blob, no Graph token)
    POST  {cv}/{v}/files/{f}/renewUpload              renew upload URI     (after RENEW_AFTER_SECONDS, or
    GET   {cv}/{v}/files/{f}                          wait for renewal      a block refused as expired)
    PUT   <SAS>&comp=blocklist                        commit block list
    POST  {cv}/{v}/files/{f}/commit                   commit content file  (fileEncryptionInfo)
    GET   {cv}/{v}/files/{f}                          wait for commit      (commitFileSuccess)
    PATCH {app}                                       set committedContentVersion
    GET   {app}/assignments                           check assignments    (committed app, groups configured)
    POST  {app}/assign                                assign               (target_group_ids only)
    GET   {old}/assignments, POST {old}/assign []     retire superseded    (target_group_ids only)

Why it is shaped this way:

- The engine re-runs :meth:`IntuneGraph.publish` after any failed call (and a later run may repeat
  a delivery whose answer was lost), so nothing is created twice: the app is found by its
  ``notes`` marker ``ringward-event:<event_id>``. Graph cannot filter on ``notes``, so the search
  lists the tenant's ``win32LobApp`` objects with only ``$select=id,displayName,notes`` (``notes``
  is a ``mobileApp`` property, selectable without a type cast) 100 per page, and matches the
  marker client-side; the one matching app is then read by id, without ``$select``, because
  ``committedContentVersion`` belongs to the derived ``mobileLobApp`` and a ``$select`` of it on a
  ``mobileApps`` path would need the type cast. An answer cut at the conversation read cap is a
  final, named failure, never a parse crash.
- An app whose ``committedContentVersion`` is set is finished (``exists``). Otherwise every content
  version is looked at, newest first: a file in ``commitFileSuccess`` (a commit that completed
  after its attempt gave up, even if a later attempt made newer versions since) is reused and only
  the PATCH is repeated; a file of the newest version still in ``commitFilePending`` is polled
  again rather than uploaded again. Anything less is uploaded again into a new content version,
  because the encryption keys of the earlier attempt are gone (Intune ignores content versions
  that are never committed).
- Upload states that cannot recover (``azureStorageUriRequestFailed``/``TimedOut``,
  ``azureStorageUriRenewalFailed``, ``commitFileTimedOut``, ``error``, ``unknown``) end the attempt
  at once as retryable: the next attempt uploads into a fresh content version. A
  ``commitFileFailed`` (Intune could not verify the package) is retried with a fresh content
  version at most :data:`MAX_COMMIT_RETRIES` times per delivery (the failed files in the app's
  content versions are counted), then it is final.
- The content is what IntuneWinAppUtil makes: a zip of the setup files, AES-256-CBC encrypted with
  fresh keys and prefixed by ``HMAC-SHA256(macKey, IV || ciphertext) || IV``
  (:func:`encrypt_content`, :func:`decrypt_content`). The zip is deterministic (sorted names, fixed
  timestamps), so its size identifies a committed upload of the same files.
- Installers are streamed, never held in memory (memory is bounded by :data:`BLOCK_BYTES` plus a
  few :data:`CHUNK_BYTES`, not by the installer): each file is read from its confined open handle
  chunk by chunk, its SHA-256 checked as it is read, and deflated into ``package.zip`` in a private
  work directory (0700 under :data:`WORK_DIR`, the file 0600, removed when the delivery ends
  whatever happens) — byte for byte :func:`build_zip`, and finished (so every digest checked)
  before the first Graph call. The upload then encrypts that file in place chunk by chunk
  (:func:`encrypt_file`: AES-CBC and PKCS7 through ``cryptography``'s update/finalize, HMAC and
  ``fileDigest`` updated as it goes; the ciphertext never overtakes the plaintext still to be read)
  and sends ``HMAC || IV || ciphertext`` as Azure blocks read from it.
- The upload URL expires: it is renewed (``renewUpload``, then a wait for
  ``azureStorageUriRenewalSuccess``) before the next block once :data:`RENEW_AFTER_SECONDS` have
  passed since it was granted (as Microsoft's own upload samples do), and once more whenever Azure
  refuses a block or the block list with 403 ``AuthenticationFailed`` (an expired signature), at
  most :data:`MAX_RENEWALS` times per upload.
- The files are read from the destination's ``artifact_root`` and checked against the event's
  size and SHA-256 before anything is sent to Graph; a mismatch, a missing file or a path that
  leaves the root (absolute, ``..``, a symlink anywhere on the path) is a final failure.
- The Azure Blob SAS URL Graph hands out is a credential: its ``sig`` goes to the destination's
  scrubber the moment it arrives, blob requests never carry the Graph token nor the destination's
  extra headers, and an upload URL is accepted only over https on an Azure Blob host
  (``<account>.blob.core.windows.net`` and the sovereign clouds' equivalents,
  :func:`check_upload_url`); a loopback upload URL only when the Graph base is itself loopback
  (the test emulator). Anything else (another host, an IP literal, plain http) is refused before
  a byte is sent.
- Review mode, no ``target_group_ids``: the app is left unassigned, for review in Intune before
  assignment (reference control ``endpoint-tool-import-review-required``), and no other app is
  touched. Automation mode, with groups: ``/assign`` sets the app's whole assignment set to those
  groups as ``required``; then, so devices do not flip between two required releases, the
  assignments of the earlier releases' apps are removed (``POST {old}/assign`` with an empty
  ``mobileAppAssignments``). Earlier releases are the apps whose ``notes`` carry a Ringward event
  marker of another event and this payload's channel marker (or, for apps made before the channel
  marker, exactly this payload's ``display_name``); apps without the Ringward marker are never
  touched. This happens only after the new app is committed and assigned, and is repeated by a
  re-run until done (an app already without assignments is left alone).
- Release order: each app's ``notes`` carry ``ringward-release:<SemVer>``. Only EARLIER releases
  are retired; when a LATER release of the channel is already in Intune (an earlier publication
  delivered late), the app is still published but not assigned, and the delivery is a final
  failure naming the later release: assigning it would roll devices back, which must be reviewed.
- Each app is named ``<display_name> <release_version>`` so people can tell releases apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from connectors.artifacts import CHUNK_BYTES, ArtifactError, ArtifactReader, open_artifact
from connectors.interface import (
    CONVERSATION_CAP_BYTES,
    JSON,
    USER_AGENT,
    Exchange,
    PreparedRequest,
    Publication,
    StreamedBody,
    TimeLeft,
    dumps_body,
    exchange,
)
from connectors.providers.fleet import Intune
from connectors.secrets import ResolvedDestination
from ringward.core.common.redaction import SecretScrubber, excerpt, redact_url
from ringward.core.delivery.config import ProviderKind, is_loopback_host
from ringward.core.delivery.event import TEST_EVENT_TYPE, ConnectorEvent
from ringward.core.delivery.intune_publication import (
    IntunePublication,
    has_intune_payload,
    parse_intune_publication,
)
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.publication_artifact import ArtifactFile
from ringward.core.errors import ConnectorEventError

GRAPH_SCOPE = Intune.scope
#: largest Azure Blob block Ringward sends: what one upload call holds in memory (tests lower it
#: to exercise several blocks)
BLOCK_BYTES = 4 * 1024 * 1024
#: where each delivery makes its private work directory (None: the system's, ``TMPDIR``)
WORK_DIR: str | None = None
#: seconds an upload URL is used before it is renewed ahead of the next block (Microsoft's upload
#: samples renew after 7.5 minutes)
RENEW_AFTER_SECONDS = 450.0
#: renewals of the upload URL within one upload at most
MAX_RENEWALS = 10
#: the clock the renewal uses; tests replace it
MONOTONIC: Callable[[], float] = time.monotonic
#: seconds between two upload-state polls (never more than the attempt has left)
POLL_INTERVAL_SECONDS = 1.0
#: upload-state polls per wait before the attempt gives up (retried as a whole)
MAX_POLLS = 60
#: how polls wait; tests replace it so they never sleep for real
SLEEP: Callable[[float], None] = time.sleep
#: apps per page of the search (``$top``)
PAGE_SIZE = 100
#: pages of app search results followed at most (PAGE_SIZE win32 apps each)
MAX_PAGES = 100
#: failed commits (``commitFileFailed``) of one delivery retried with a fresh content version
MAX_COMMIT_RETRIES = 2
#: upload states that never move on: the attempt ends at once, the next one uses a fresh version
TERMINAL_STATES = frozenset(
    {
        "azureStorageUriRequestFailed",
        "azureStorageUriRequestTimedOut",
        "azureStorageUriRenewalFailed",
        "azureStorageUriRenewalTimedOut",
        "commitFileTimedOut",
        "error",
        "unknown",
    }
)
COMMIT_FAILED = "commitFileFailed"
#: the states a renewed upload URL is ready in (Graph answers the first; the second is accepted too)
RENEWED_STATES = ("azureStorageUriRenewalSuccess", "azureStorageUriRequestSuccess")
#: hosts an upload URL may name (Azure Blob Storage in the public and sovereign clouds)
BLOB_HOST_SUFFIXES = (
    ".blob.core.windows.net",
    ".blob.core.usgovcloudapi.net",
    ".blob.core.chinacloudapi.cn",
    ".blob.core.cloudapi.de",
)
_STORAGE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
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


# -- streaming: the same package and payload, from files, in bounded memory ---------------------------


def _zip_entry(name: str, size: int) -> zipfile.ZipInfo:
    """The entry :func:`build_zip` writes for a file (same timestamp, mode, system and size, so the
    zip64 decision and every header byte are the same)."""
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 0
    info.file_size = size
    return info


def stream_zip(target: io.RawIOBase | io.BufferedIOBase, files: Sequence[ArtifactReader]) -> None:
    """Write the setup folder as a zip into ``target`` (seekable), reading each file in chunks.

    Byte for byte :func:`build_zip` of the same files: each entry's size is set before its header is
    written (as ``writestr`` does) and ``ZipFile`` rewrites the local header in place once the CRC is
    known. Each file's SHA-256 is checked while it is read (:meth:`ArtifactReader.chunks`).

    Raises:
        ArtifactError: a file is not the bytes the event names.
    """
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for reader in sorted(files, key=lambda r: r.name):
            with archive.open(_zip_entry(reader.name, reader.size), mode="w") as entry:
                for chunk in reader.chunks():
                    entry.write(chunk)


@dataclass(frozen=True)
class PackageFile:
    """The zip of the setup files in the delivery's private work directory."""

    path: str
    #: size of the zip (``size`` of the content file; identifies a committed upload of it)
    size: int


def _private_file(path: str) -> int:
    """A new file only the owner can read or write (never an existing file or a link)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o600)


def write_package(root: str, content: Sequence[ArtifactFile], work_dir: str) -> PackageFile:
    """The zip of ``content`` (read confined to ``root``, every file checked) as ``package.zip`` in
    ``work_dir``. Every file is opened and checked (type, links, size) before any is read.

    Raises:
        ArtifactError: a file is missing, outside the root, or not the bytes the event names.
    """
    path = os.path.join(work_dir, "package.zip")
    with ExitStack() as stack:
        readers = [stack.enter_context(open_artifact(root, item)) for item in content]
        with os.fdopen(_private_file(path), "w+b") as target:
            stream_zip(target, readers)
            target.flush()
            size = os.fstat(target.fileno()).st_size
    return PackageFile(path, size)


@dataclass(frozen=True)
class EncryptedPackage:
    """An ``.intunewin`` payload on disk: ``head`` (HMAC || IV) then the ciphertext at ``path``."""

    path: str
    head: bytes
    #: ``fileEncryptionInfo`` of the commit call (base64 values)
    encryption_info: dict[str, str]
    #: size of the unencrypted package (``size`` of the content file)
    size: int
    #: size of the whole payload (``sizeEncrypted``): head plus ciphertext
    size_encrypted: int

    def blocks(self, block_bytes: int) -> Iterator[bytes]:
        """The payload in blocks of ``block_bytes`` (the last one shorter), read from the file."""
        if block_bytes <= len(self.head):
            raise ValueError(f"expected blocks larger than {len(self.head)} bytes, found {block_bytes}")
        with open(self.path, "rb") as source:
            yield self.head + source.read(block_bytes - len(self.head))
            while chunk := source.read(block_bytes):
                yield chunk


def encrypt_file(
    path: str,
    *,
    key: bytes | None = None,
    mac_key: bytes | None = None,
    iv: bytes | None = None,
    chunk_bytes: int | None = None,
) -> EncryptedPackage:
    """Encrypt the package at ``path`` in place, chunk by chunk, the way :func:`encrypt_content` does
    in memory (same bytes for the same keys): AES-256-CBC with PKCS7 padding, HMAC-SHA256 over
    ``IV || ciphertext`` and the SHA-256 of the plain package updated as each chunk goes through.

    In place is safe because the ciphertext written so far is never longer than the plaintext read
    so far (the padder and the cipher only hold bytes back); only the final block can extend the
    file, by at most 16 bytes. The keys (and the chunk size) are arguments only so tests can fix them.
    """
    key = key if key is not None else os.urandom(32)
    mac_key = mac_key if mac_key is not None else os.urandom(32)
    iv = iv if iv is not None else os.urandom(16)
    if (len(key), len(mac_key), len(iv)) != (32, 32, 16):
        raise ValueError(f"expected key/mac key/IV of 32/32/16 bytes, found {len(key)}/{len(mac_key)}/{len(iv)}")
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    signer = hmac.new(mac_key, iv, hashlib.sha256)
    digest = hashlib.sha256()
    flags = os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        read_at = written = 0

        def put(data: bytes) -> None:
            nonlocal written
            signer.update(data)
            view = memoryview(data)
            while view:
                done = os.pwrite(fd, view, written)
                written += done
                view = view[done:]

        while chunk := os.pread(fd, chunk_bytes or CHUNK_BYTES, read_at):
            read_at += len(chunk)
            digest.update(chunk)
            put(encryptor.update(padder.update(chunk)))
        put(encryptor.update(padder.finalize()) + encryptor.finalize())
    finally:
        os.close(fd)
    mac = signer.digest()

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    info = {
        "encryptionKey": b64(key),
        "macKey": b64(mac_key),
        "initializationVector": b64(iv),
        "mac": b64(mac),
        "profileIdentifier": PROFILE,
        "fileDigest": b64(digest.digest()),
        "fileDigestAlgorithm": "SHA256",
    }
    return EncryptedPackage(path, mac + iv, info, read_at, len(mac) + len(iv) + written)


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


def graph_error(answer: Exchange, scrubber: SecretScrubber | None = None) -> str:
    """A short excerpt of a Graph error (``{"error": {"code", "message"}}``) or of the body (scrubbed
    whole by ``scrubber`` before it is cut)."""
    data = answer.json()
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        text = f"{error.get('code') or 'error'}: {error.get('message') or ''}".rstrip(": ")
        return excerpt(text, limit=_ERROR_LIMIT, scrubber=scrubber)
    return excerpt(answer.text, limit=_ERROR_LIMIT, scrubber=scrubber)


def _graph_id(value: object, what: str) -> str:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text or len(text) > 128 or not set(text) <= _ID_CHARS or text.startswith("."):
        raise RefusedAnswer(f"expected a Graph {what} id [A-Za-z0-9._-], found {str(value)[:40]!r}")
    return text


def check_upload_url(uri: str, graph_base: str) -> str:
    """``uri`` if it is an upload URL Ringward will send the package to, else :class:`RefusedAnswer`.

    https on ``<account>.blob.core.windows.net`` (or a sovereign cloud's Blob host) on the default
    port; a loopback URL (http allowed) only when ``graph_base`` is loopback too (the emulator).
    """
    try:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
        port = parts.port
        base_host = urlsplit(graph_base).hostname or ""
    except ValueError as exc:
        raise RefusedAnswer(f"expected a valid azureStorageUri, found an unparsable one ({exc})") from exc
    shown = redact_url(uri)
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise RefusedAnswer(f"expected an azureStorageUri without credentials or fragment, found {shown}")
    if is_loopback_host(base_host) and is_loopback_host(host) and parts.scheme in ("http", "https"):
        return uri
    if parts.scheme != "https":
        raise RefusedAnswer(f"expected an https azureStorageUri, found {shown}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise RefusedAnswer(f"expected an Azure Blob host in azureStorageUri, found the IP literal {shown}")
    suffix = next((s for s in BLOB_HOST_SUFFIXES if host.endswith(s)), None)
    if suffix is None or not _STORAGE_ACCOUNT.match(host[: -len(suffix)]) or port not in (None, 443):
        raise RefusedAnswer(
            f"expected an azureStorageUri on <account>{BLOB_HOST_SUFFIXES[0]} (or a sovereign cloud's Blob host), "
            f"found {shown}"
        )
    return uri


def _object(answer: Exchange, what: str) -> dict[str, Any]:
    if answer.truncated:
        raise RefusedAnswer(
            f"expected a Graph answer ({what}) within the {CONVERSATION_CAP_BYTES // (1024 * 1024)} MiB read cap, "
            "found a longer one (cut, not read)"
        )
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
        """An Azure Blob call: the SAS in the URL authenticates; no Graph token, no configured headers.

        The block goes to httpx as a one-shot stream, not as ``content``: httpx keeps each request
        in a reference cycle (response <-> its bound stream) until the garbage collector runs, and a
        request holding its block would keep several blocks alive at once.
        """
        sent = {"user-agent": USER_AGENT, **headers}
        stream = StreamedBody(_once(content), len(content), hashlib.sha256(content).hexdigest())
        return self._send(step, PreparedRequest(method="PUT", url=url, headers=sent, content=b"", stream=stream))

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
        scrubber = self.dest.scrubber
        # an error of ours may quote a cut piece of the answer: pieces of secrets are masked too
        detail = scrubber.scrub_fragments(error) if error is not None else graph_error(answer, scrubber)
        return Publication(last=answer, step=step, outcome=outcome, error=detail, calls=tuple(self.calls))

    def not_sent(self, step: str, error: str) -> Publication:
        """A final failure found before sending (bad payload, bad artifact): nothing reached the tool."""
        return Publication.not_sent(step, self.dest.scrubber.scrub(error), calls=tuple(self.calls))


def _once(data: bytes) -> Callable[[], Iterator[bytes]]:
    """A body of ``data`` as a generator: once sent, the generator no longer refers to it."""

    def chunks() -> Iterator[bytes]:
        yield data

    return chunks


_OCTETS = {"content-type": "application/octet-stream"}
_XML = {"content-type": "application/xml"}


@dataclass
class _Upload:
    """The upload URL in use, when it was granted and how often it was renewed."""

    sas: str
    granted: float
    renewals: int = 0

    def url(self, operation: str) -> str:
        joiner = "&" if urlsplit(self.sas).query else "?"
        return f"{self.sas}{joiner}{operation}"


def _expired(answer: Exchange) -> bool:
    """Azure refused the SAS (403 ``AuthenticationFailed``: expired or no longer valid)."""
    return answer.status_code == 403 and "AuthenticationFailed" in answer.text


@dataclass(frozen=True)
class _App:
    id: str
    committed_version: str | None

    @property
    def committed(self) -> bool:
        return bool(self.committed_version)


@dataclass(frozen=True)
class _Found:
    """What the search found: this event's app (None: not made yet), the answer that showed it and its
    step, and the earlier releases' apps it supersedes."""

    app: _App | None
    answer: Exchange
    step: str
    superseded: tuple[str, ...]
    #: later releases of the channel already in Intune (id, display name)
    newer: tuple[tuple[str, str], ...] = ()


class IntuneGraph(Intune):
    """Publishes Intune export payloads as Win32 apps through Microsoft Graph (``mode: native``);
    authenticates like the relay mode (Entra client credentials for the Graph scope)."""

    kind = ProviderKind.INTUNE

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        """The ``win32LobApp`` create body (what a single-request preview would show)."""
        try:
            return dumps_body(parse_intune_publication(events[0]).win32_lob_app())
        except ConnectorEventError:
            return b"{}"

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
        # private (0700) and removed whatever happens: the package and its ciphertext live only here
        with tempfile.TemporaryDirectory(prefix="ringward-intunewin-", dir=WORK_DIR) as work_dir:
            try:
                package = write_package(root, publication.content, work_dir)
            except ArtifactError as exc:
                return talk.not_sent("verify artifact", str(exc))
            try:
                return self._converse(talk, publication, package)
            except RefusedAnswer as exc:
                assert talk.last is not None  # only answers are refused, so a call was made
                step, answer = talk.last
                return talk.failed(step, answer, error=str(exc), outcome=Outcome.REJECTED)

    def _converse(self, talk: _Conversation, publication: IntunePublication, package: PackageFile) -> Publication:
        found = self._find_app(talk, publication)
        if isinstance(found, Publication):
            return found
        app, answer = found.app, found.answer
        if app is not None and app.committed:
            return self._assign(
                talk, app.id, answer, found.step, already=True, superseded=found.superseded, newer=found.newer
            )
        if app is None:
            created = talk.graph(
                "create win32LobApp", "POST", "/deviceAppManagement/mobileApps", publication.win32_lob_app()
            )
            if not created.ok:
                return talk.failed("create win32LobApp", created)
            app = _App(_graph_id(_object(created, "created app").get("id"), "app"), committed_version=None)
        versions = f"/deviceAppManagement/mobileApps/{app.id}/microsoft.graph.win32LobApp/contentVersions"
        resumed = self._resume(talk, versions, publication, app, package.size)
        if isinstance(resumed, Publication):
            return resumed
        version, failures = resumed
        if version is None:
            uploaded = self._upload(talk, versions, publication, package, failures)
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
        return self._assign(talk, app.id, patched, step, already=False, superseded=found.superseded, newer=found.newer)

    # -- steps ----------------------------------------------------------------------------------------
    # Each returns what it found or made, or the Publication of the call that failed.

    def _find_app(self, talk: _Conversation, publication: IntunePublication) -> _Found | Publication:
        """This event's app (read by id) and the earlier releases' apps it supersedes."""
        step = "find win32LobApp"
        query = (
            "$filter="
            + quote("isof('microsoft.graph.win32LobApp')", safe="")
            + f"&$select=id,displayName,notes&$top={PAGE_SIZE}"
        )
        target = f"/deviceAppManagement/mobileApps?{query}"
        origin = urlsplit(talk.base)
        mine: list[str] = []
        superseded: list[str] = []
        newer: list[tuple[str, str]] = []
        answer: Exchange | None = None
        for _page in range(MAX_PAGES):
            answer = talk.graph(step, "GET", target)
            if not answer.ok:
                return talk.failed(step, answer)
            for item in _values(answer, "apps"):
                notes = item.get("notes")
                if publication.has_marker(notes):
                    mine.append(_graph_id(item.get("id"), "app"))
                elif publication.supersedes(item.get("displayName"), notes):
                    superseded.append(_graph_id(item.get("id"), "app"))
                elif publication.same_channel_newer(item.get("displayName"), notes):
                    newer.append((_graph_id(item.get("id"), "app"), str(item.get("displayName"))[:120]))
            next_link = _object(answer, "apps").get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                break
            try:
                parts = urlsplit(next_link)
            except ValueError as exc:
                why = excerpt(str(exc), limit=80, scrubber=talk.dest.scrubber)
                raise RefusedAnswer(f"expected a valid @odata.nextLink, found an unparsable one ({why})") from exc
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                # the bearer token goes only to the configured Graph host
                raise RefusedAnswer(
                    f"expected @odata.nextLink on {origin.scheme}://{origin.netloc}, found {redact_url(next_link)}"
                )
            target = next_link
        else:
            raise RefusedAnswer(f"expected at most {MAX_PAGES} pages of {PAGE_SIZE} win32LobApps, found more")
        assert answer is not None
        found = _Found(None, answer, step, tuple(dict.fromkeys(superseded)), tuple(dict.fromkeys(newer)))
        step = "get win32LobApp"
        for app_id in dict.fromkeys(mine):
            got = talk.graph(step, "GET", f"/deviceAppManagement/mobileApps/{app_id}")
            if got.status_code == 404:
                continue  # deleted since the search
            if not got.ok:
                return talk.failed(step, got)
            data = _object(got, "app")
            if not publication.has_marker(data.get("notes")):
                continue
            version = data.get("committedContentVersion")
            app = _App(app_id, _graph_id(version, "content version") if version else None)
            if found.app is None or (app.committed and not found.app.committed):
                found = _Found(app, got, step, found.superseded, found.newer)
            if app.committed:
                break
        return found

    def _resume(
        self, talk: _Conversation, versions: str, publication: IntunePublication, app: _App, size: int
    ) -> tuple[str | None, int] | Publication:
        """What earlier attempts left: a committed content version to reuse (or None), and how many
        commits of this package Intune refused so far.

        Every content version is looked at, newest first: a file in ``commitFileSuccess`` is reused;
        a file of the newest version still in ``commitFilePending`` is polled until it is decided.
        """
        step = "find content version"
        listed = talk.graph(step, "GET", versions)
        if not listed.ok:
            return talk.failed(step, listed)
        ids = {_graph_id(v.get("id"), "content version") for v in _values(listed, "content versions")}
        newest_first = sorted(ids, key=lambda v: (len(v), v), reverse=True)  # Graph numbers them 1, 2, ...
        failures = 0
        pending: str | None = None
        seen = listed
        step = "find content file"
        for n, version in enumerate(newest_first):
            if version == app.committed_version:
                continue
            files = talk.graph(step, "GET", f"{versions}/{version}/files")
            if not files.ok:
                return talk.failed(step, files)
            seen = files
            for item in _values(files, "content files"):
                if item.get("name") != publication.file_name:
                    continue
                state = item.get("uploadState")
                if (item.get("isCommitted") is True or state == "commitFileSuccess") and item.get("size") == size:
                    return version, failures
                if state == COMMIT_FAILED:
                    failures += 1
                elif state == "commitFilePending" and n == 0 and pending is None:
                    pending = f"{versions}/{version}/files/{_graph_id(item.get('id'), 'content file')}"
        if failures > MAX_COMMIT_RETRIES:
            return talk.failed(
                step,
                seen,
                error=f"expected a package Intune accepts, found {failures} failed commits (no more retries)",
                outcome=Outcome.REJECTED,
            )
        if pending is not None:
            done = self._wait(talk, "wait for commit", pending, want="commitFileSuccess", failures=failures)
            if isinstance(done, Publication):
                return done
            return newest_first[0], failures
        return None, failures

    def _upload(
        self, talk: _Conversation, versions: str, publication: IntunePublication, package: PackageFile, failures: int
    ) -> str | Publication:
        """Create a content version, upload the encrypted package into it and commit it; its id.

        The package file is encrypted in place (so this runs at most once per package file).
        """
        step = "create content version"
        created = talk.graph(step, "POST", versions, {})
        if not created.ok:
            return talk.failed(step, created)
        version = _graph_id(_object(created, "content version").get("id"), "content version")
        content = encrypt_file(package.path)
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
            talk, "wait for upload URI", file_path, want="azureStorageUriRequestSuccess", failures=failures
        )
        if isinstance(ready, Publication):
            return ready
        uploaded = self._put_blocks(talk, file_path, self._sas_url(talk, ready), content, failures)
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
        done = self._wait(talk, "wait for commit", file_path, want="commitFileSuccess", failures=failures)
        if isinstance(done, Publication):
            return done
        return version

    def _wait(
        self, talk: _Conversation, step: str, file_path: str, *, want: str | tuple[str, ...], failures: int
    ) -> Exchange | Publication:
        """Poll the content file until its ``uploadState`` is ``want`` (one of them, when a tuple;
        bounded by polls and the deadline).

        A terminal state ends the attempt at once (retryable: a fresh content version next time);
        ``commitFileFailed`` is retryable while this delivery has had at most
        :data:`MAX_COMMIT_RETRIES` failed commits (``failures`` earlier ones plus this one).
        """
        wanted = (want,) if isinstance(want, str) else want
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
            if state in wanted:
                return answer
            if state == COMMIT_FAILED:
                count = failures + 1
                final = count > MAX_COMMIT_RETRIES
                why = (
                    f"failed commit {count}, no more retries"
                    if final
                    else f"failed commit {count} of at most {MAX_COMMIT_RETRIES} retried with a fresh content version"
                )
                return talk.failed(
                    step,
                    answer,
                    error=f"expected uploadState {wanted[0]}, found {state} ({why})",
                    outcome=Outcome.REJECTED if final else Outcome.RETRY,
                )
            if state in TERMINAL_STATES:
                return talk.failed(
                    step,
                    answer,
                    error=f"expected uploadState {wanted[0]}, found {state} (a fresh content version next attempt)",
                    outcome=Outcome.RETRY,
                )
            SLEEP(min(POLL_INTERVAL_SECONDS, talk.left() / 2))
        assert answer is not None
        return talk.failed(
            step,
            answer,
            error=f"expected uploadState {wanted[0]} within {MAX_POLLS} polls, found {str(state)[:60]}",
            outcome=Outcome.RETRY,
        )

    @staticmethod
    def _sas_url(talk: _Conversation, ready: Exchange) -> str:
        uri = _object(ready, "content file").get("azureStorageUri")
        if not isinstance(uri, str) or not uri:
            raise RefusedAnswer("expected azureStorageUri with uploadState azureStorageUriRequestSuccess, found none")
        return check_upload_url(uri, talk.base)

    def _put_blocks(
        self, talk: _Conversation, file_path: str, sas: str, content: EncryptedPackage, failures: int
    ) -> Publication | None:
        """Azure Blob ``Put Block`` per block read from the encrypted file, then ``Put Block List``;
        None when all succeeded. The upload URL is renewed when it gets old or Azure refuses it as
        expired (see the module docstring)."""
        upload = _Upload(sas, MONOTONIC())
        ids: list[str] = []
        for index, data in enumerate(content.blocks(BLOCK_BYTES)):
            ident = block_id(index)
            step = f"upload block {index}"
            if index and MONOTONIC() - upload.granted >= RENEW_AFTER_SECONDS:
                renewed = self._renew(talk, file_path, upload, failures)
                if renewed is not None:
                    return renewed
            answer = talk.blob(step, upload.url(f"comp=block&blockid={quote(ident, safe='')}"), data, _OCTETS)
            if _expired(answer) and upload.renewals < MAX_RENEWALS:
                renewed = self._renew(talk, file_path, upload, failures)
                if renewed is not None:
                    return renewed
                answer = talk.blob(step, upload.url(f"comp=block&blockid={quote(ident, safe='')}"), data, _OCTETS)
            if not answer.ok:
                return talk.failed(step, answer)
            ids.append(ident)
        step = "commit block list"
        body = block_list_xml(ids)
        answer = talk.blob(step, upload.url("comp=blocklist"), body, _XML)
        if _expired(answer) and upload.renewals < MAX_RENEWALS:
            renewed = self._renew(talk, file_path, upload, failures)
            if renewed is not None:
                return renewed
            answer = talk.blob(step, upload.url("comp=blocklist"), body, _XML)
        if not answer.ok:
            return talk.failed(step, answer)
        return None

    def _renew(self, talk: _Conversation, file_path: str, upload: _Upload, failures: int) -> Publication | None:
        """Ask Graph to renew the upload URL and wait for it (``upload`` then holds the new one);
        None when renewed."""
        step = "renew upload URI"
        asked = talk.graph(step, "POST", f"{file_path}/renewUpload", {})
        if not asked.ok:
            return talk.failed(step, asked)
        ready = self._wait(talk, "wait for upload URI renewal", file_path, want=RENEWED_STATES, failures=failures)
        if isinstance(ready, Publication):
            return ready
        upload.sas = self._sas_url(talk, ready)
        upload.granted = MONOTONIC()
        upload.renewals += 1
        return None

    def _assign(
        self,
        talk: _Conversation,
        app_id: str,
        previous: Exchange,
        step: str,
        *,
        already: bool,
        superseded: Sequence[str],
        newer: Sequence[tuple[str, str]] = (),
    ) -> Publication:
        """Assign the app to the configured groups and retire the releases it supersedes (no groups:
        leave everything for review); the final Publication.

        For an app an earlier run finished, the assignments are checked first, so a run that failed
        at assignment or while retiring is completed rather than reported as existing.
        """
        groups = talk.dest.config.target_group_ids
        if not groups:
            return talk.done(step, previous, app_id, Outcome.EXISTS if already else None)
        if newer:
            # an earlier release delivered after a later one: assigning it would roll devices back
            # (and leave two required releases); the app stays published, unassigned, for review
            later = ", ".join(f"{name} ({app})" for app, name in newer[:3])
            return talk.failed(
                "assign",
                previous,
                error=f"a later release of this channel is already in Intune: {later}; "
                f"refusing to assign {app_id} over it (a rollback must be reviewed)",
                outcome=Outcome.REJECTED,
            )
        app_path = f"/deviceAppManagement/mobileApps/{app_id}"
        last: tuple[str, Exchange] | None = None
        assigned: set[object] = set()
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
        if not already or not set(groups) <= assigned:
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
            last = (assign, answer)
        retired = self._retire(talk, superseded)
        if isinstance(retired, Publication):
            return retired
        last = retired or last
        if last is None:
            return talk.done(step, previous, app_id, Outcome.EXISTS)
        return talk.done(last[0], last[1], app_id)

    @staticmethod
    def _retire(talk: _Conversation, superseded: Sequence[str]) -> tuple[str, Exchange] | Publication | None:
        """Remove every assignment of the superseded releases' apps (apps already without any are
        left alone); the last removal made, None when there was nothing to remove."""
        last: tuple[str, Exchange] | None = None
        for old in superseded:
            old_path = f"/deviceAppManagement/mobileApps/{old}"
            step = "check superseded assignments"
            answer = talk.graph(step, "GET", f"{old_path}/assignments")
            if answer.status_code == 404:
                continue  # deleted since the search
            if not answer.ok:
                return talk.failed(step, answer)
            if not _values(answer, "superseded assignments"):
                continue
            step = "unassign superseded release"
            answer = talk.graph(step, "POST", f"{old_path}/assign", {"mobileAppAssignments": []})
            if answer.status_code == 404:
                continue
            if not answer.ok:
                return talk.failed(step, answer)
            last = (step, answer)
        return last


def _register_sas(dest: ResolvedDestination, uri: str) -> None:
    """Register an upload URL's signature (and whole query) with the scrubber before it is used."""
    try:
        query = urlsplit(uri).query
    except ValueError:
        return
    if query:
        dest.scrubber.add(query, fragments=False)  # sv=, se=... are not random: only sig is masked piecemeal
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.lower() == "sig" and value:
            dest.scrubber.add(value)
