"""Native Jamf Pro publication: package record + uploaded installer, install script, policy.

The destination ``url`` is the Jamf Pro server (``https://acme.jamfcloud.com``). Authentication is a
Jamf Pro API client (``client_id`` + ``client_secret``; token from ``<server>/api/oauth/token`` or
``token_url``), whose Bearer token is accepted by both the Jamf Pro API and the Classic API.

One delivery is this conversation (every call through :func:`connectors.interface.exchange`)::

    GET  /api/v1/packages?page=N&page-size=100&filter=packageName=="<file>"   find package (paged)
    POST /api/v1/packages                                       create package      (absent)
    POST /api/v1/packages/{id}/upload   multipart "file"        upload package      (not yet uploaded)
    PUT  /api/v1/packages/{id}          + hashType/hashValue    record package hash (after upload)
    GET  /api/v1/scripts?page=N&page-size=100&filter=name=="<policy> install <release>"  find script
    POST /api/v1/scripts                                        create script       (absent)
    GET  /JSSResource/policies/name/<policy>/subset/General&Scripts   find policy (404: absent)
    GET  /api/v1/scripts/{id}                                   read script  (whose policy is it?)
    POST /JSSResource/policies/id/0 | PUT .../id/{id}           create / update policy (Classic XML)

Review and automation (who decides that a release goes live):

- Review mode (the destination has no ``target_group_ids``): a new policy is created disabled and
  unscoped. An update of an existing policy switches package and script AND sets
  ``<enabled>false</enabled>``; it carries no ``<scope>`` (a Classic PUT changes only the elements it
  carries), so the reviewer's scope survives but every new release waits, disabled, until a
  reviewer enables the policy again in Jamf. Nothing Ringward publishes runs without review.
- Automation mode (``target_group_ids`` configured): Ringward owns the policy's scope and enabled
  state; every publication scopes it to exactly those groups and enables it.
- Each release has its own install script, ``"<policy_name> install <release>"`` (release: the
  event's ``release.version``, else the package file name). A script is never rewritten: one found
  with other contents is a final failure (publish a new release instead), so no script a policy
  already runs changes under it. Package and script are switched together in the one policy PUT, so
  a failed publication leaves the policy as it was.
- Release order: a policy that already runs a LATER release (its Ringward install script is named
  for a later SemVer) is never switched back by an earlier release's publication delivered late:
  that would be a rollback, which must be reviewed; the delivery is a final failure naming both.
- A package record is immutable once its content is uploaded: the same-named Ringward record with
  ``hashType SHA_512`` and a different hash is a final failure ("refusing to replace a published
  installer"); a Ringward record without that hash (created, then the upload failed) is uploaded
  again.

Ownership (Ringward only ever changes what it made):

- Packages and scripts are reused only when their ``notes`` carry the mark ``Published by
  Ringward.``; a record of the same name without it is a final failure naming it ("... exists in
  Jamf but was not published by Ringward; rename or remove it").
- Classic policies have no notes: a same-named policy is Ringward's only if it runs a script that
  carries the mark (the script ids of its ``<scripts>``, read with ``GET /api/v1/scripts/{id}``
  unless one is this release's script); otherwise it is foreign and a final failure.
- Jamf compares names case-insensitively, and so does Ringward: a record differing only in case is
  the same record (foreign or not, as above). Names with ``*`` (an RSQL wildcard that cannot be
  escaped) or ``"`` are refused when the payload is read (``ringward.core.delivery.jamf_publication``).
- A create refused as a duplicate although the search found nothing (a concurrent delivery made the
  record meanwhile) is followed by one more search in the same conversation; if that still finds
  nothing the failure is final ("Jamf says X exists but the search does not find it") rather than a
  retry loop.

Why it is shaped this way:

- The engine re-runs :meth:`JamfPro.publish` after any failed call (and a later run may repeat a
  delivery whose answer was lost), so every step looks up what an earlier attempt made and reuses
  it rather than creating a second one.
- "Already uploaded" is recorded in Jamf itself: only after the upload succeeded does the package
  record get ``hashType: SHA_512`` and ``hashValue`` = the SHA-512 of the verified bytes (Jamf's own
  package hash field, the one JamfUploader compares too). Setting the hash at create time would
  make a failed upload look finished.
- The installer is read from the destination's ``artifact_root`` and checked against the event's
  size and SHA-256 before anything is created in Jamf; a mismatch, a missing file or a path that
  leaves the root (absolute, ``..``, a symlink anywhere on the path) is a final failure.
- Installers are streamed, never held in memory: a first pass over the open file checks its
  SHA-256, computes the SHA-512 Jamf records and picks the multipart boundary (and the body's
  digest for evidence); the upload then streams ``head || file || tail`` with a declared
  ``Content-Length`` from a second pass over the same open file, which checks the SHA-256 again
  and abandons the request before its last chunk if the file changed in between (the package
  record then has no hash, so the next attempt uploads again). Memory stays at a few chunks of
  :data:`connectors.artifacts.CHUNK_BYTES` whatever the installer's size. The upload is one
  call, so it must fit the destination's ``timeout_seconds``.
- Large answers: searches are paged (``page``/``page-size`` until ``totalCount``) and the policy is
  read as the ``General&Scripts`` subset only. An answer cut at the conversation read cap
  (:attr:`Exchange.truncated`) is a final, named failure, never read.
- Policy XML is built with ElementTree (values are never spliced into markup); XML answers are read
  only when they carry no DTD, so no entity can be declared (no billion laughs, no external
  entities) — defusedxml is not a dependency of this project. Classic error pages (HTML) are turned
  into text by a linear scan of at most 64 KiB (no backtracking regex).
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import xml.etree.ElementTree as ET  # answers are parsed only by _parse_xml, which refuses DTDs
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from connectors.artifacts import ArtifactError, ArtifactReader, open_artifact
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
from connectors.providers.fleet import _FleetProvider
from connectors.secrets import ResolvedDestination
from ringward.core.common.redaction import SecretScrubber, excerpt, redact_url
from ringward.core.common.versions import version_or_none
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import TEST_EVENT_TYPE, ConnectorEvent
from ringward.core.delivery.jamf_publication import (
    JamfPublication,
    has_jamf_payload,
    parse_jamf_publication,
)
from ringward.core.delivery.policy import Outcome
from ringward.core.errors import ConnectorEventError

XML = "application/xml"
#: Jamf's "no category" id (Jamf Pro API and Classic API)
NO_CATEGORY = "-1"
#: Jamf's default package priority (1-20)
PACKAGE_PRIORITY = 10
#: the hash type Ringward records on a package record once its content is uploaded
HASH_TYPE = "SHA_512"
#: what the notes of every package and script Ringward creates start with (its ownership mark)
RINGWARD_MARK = "Published by Ringward."
#: results per page of a Jamf Pro API search, and the most pages read of one search
PAGE_SIZE = 100
MAX_PAGES = 50
#: scripts of a found policy read at most to decide whether it is Ringward's
MAX_OWNER_LOOKUPS = 10
#: the policy sections read when looking a policy up (Classic API subset syntax)
POLICY_SUBSETS = "General&Scripts"
#: characters of an HTML error page turned into text (the rest is not read)
HTML_TEXT_LIMIT = 64 * 1024
_ERROR_LIMIT = 200
_FORBIDDEN_XML = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_TAG_NAME = re.compile(r"(/?)([A-Za-z][A-Za-z0-9]*)")
_HIDDEN_HTML = frozenset({"head", "style", "script"})
_JAMF_ID = re.compile(r"^[0-9]{1,18}$")
_X_RUN = re.compile(rb"x*")


class RefusedAnswer(Exception):
    """An answer Ringward will not read (DTD/entity declarations, malformed, no id)."""


def _parse_xml(text: str) -> ET.Element:
    """An XML answer without any DTD (so without entity declarations), or :class:`RefusedAnswer`."""
    if _FORBIDDEN_XML.search(text):
        raise RefusedAnswer("XML answer declares a DTD or entities (refused, not parsed)")
    try:
        return ET.fromstring(text)  # noqa: S314 - no DTD: only predefined entities can occur
    except ET.ParseError as exc:
        raise RefusedAnswer(f"expected well-formed XML, found a parse error ({exc})") from exc


def _policy_id(text: str, path: str) -> str:
    """The policy id at ``path`` (``id`` in a create/update answer, ``general/id`` in a lookup)."""
    found = _parse_xml(text).findtext(path)
    value = (found or "").strip()
    if not _JAMF_ID.match(value):
        raise RefusedAnswer(f"expected a numeric policy id at <policy>/{path}, found {value[:40]!r}")
    return value


def _json_id(answer: Exchange) -> str:
    data = answer.json()
    value = str(data.get("id", "")) if isinstance(data, dict) else ""
    if not _JAMF_ID.match(value):
        raise RefusedAnswer(f"expected a JSON answer with a numeric id, found {excerpt(answer.text, limit=60)!r}")
    return value


def _page(answer: Exchange) -> tuple[list[dict[str, Any]], int]:
    """One page of a Jamf Pro API search: its results and the ``totalCount`` of the whole search."""
    data = answer.json()
    results = data.get("results") if isinstance(data, dict) else None
    total = data.get("totalCount") if isinstance(data, dict) else None
    if not isinstance(results, list) or not isinstance(total, int) or isinstance(total, bool):
        raise RefusedAnswer(
            f"expected a search answer with totalCount and results[], found {excerpt(answer.text, limit=60)!r}"
        )
    return [r for r in results if isinstance(r, dict)], total


def same_name(a: str, b: str) -> bool:
    """Whether Jamf considers two record names the same (its names are unique case-insensitively)."""
    return a.casefold() == b.casefold()


def is_ringward_record(record: Mapping[str, Any]) -> bool:
    """Whether a package or script record carries Ringward's mark in its notes."""
    notes = record.get("notes")
    return isinstance(notes, str) and RINGWARD_MARK in notes


def html_text(text: str) -> str:
    """The visible text of an HTML page (outside head/style/script), read in one linear pass.

    At most :data:`HTML_TEXT_LIMIT` characters are read. Tags are found with ``str.find`` and named
    with an anchored match on the tag alone, so no input can make this backtrack.
    """
    text = text[:HTML_TEXT_LIMIT]
    parts: list[str] = []
    hidden: str | None = None
    pos = 0
    while pos < len(text):
        start = text.find("<", pos)
        if start < 0:
            if hidden is None:
                parts.append(text[pos:])
            break
        if hidden is None:
            parts.append(text[pos:start])
        end = text.find(">", start + 1)
        if end < 0:
            break  # an unclosed tag at the end: not text
        match = _TAG_NAME.match(text, start + 1, end)
        if match is not None:
            closing, name = match.group(1) == "/", match.group(2).lower()
            if hidden is None and not closing and name in _HIDDEN_HTML:
                hidden = name
            elif closing and name == hidden:
                hidden = None
        parts.append(" ")
        pos = end + 1
    return html.unescape("".join(parts))


def jamf_error(answer: Exchange, scrubber: SecretScrubber | None = None) -> str:
    """A short excerpt of a Jamf error: the Jamf Pro API ``errors[]`` envelope, or Classic HTML as text
    (scrubbed whole by ``scrubber`` before it is cut)."""
    data = answer.json()
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        parts = []
        for item in data["errors"]:
            if not isinstance(item, dict):
                continue
            part = f"{item.get('code') or 'ERROR'}: {item.get('description') or ''}".rstrip(": ")
            if item.get("field"):
                part += f" ({item['field']})"
            parts.append(part)
        if parts:
            return excerpt("; ".join(parts), limit=_ERROR_LIMIT, scrubber=scrubber)
    text = answer.text
    if "<" in text:
        text = html_text(text)
    return excerpt(text, limit=_ERROR_LIMIT, scrubber=scrubber)


def _is_duplicate(answer: Exchange) -> bool:
    """Jamf's "name already taken": ``DUPLICATE_FIELD`` (Jamf Pro API) or 409 "Duplicate name" (Classic)."""
    data = answer.json()
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        return any(isinstance(e, dict) and e.get("code") == "DUPLICATE_FIELD" for e in data["errors"])
    return answer.status_code == 409 and "duplicate name" in answer.text.lower()


def rsql_filter(field_name: str, value: str) -> str:
    """``field=="value"`` with the RSQL escapes for a quoted value (backslash, double quote)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{field_name}=="{escaped}"'


def package_body(publication: JamfPublication, *, sha512: str | None) -> dict[str, Any]:
    """The Jamf Pro API package record (every field the API requires on create and on PUT).

    ``sha512`` is set only once the content is uploaded (see the module docstring).
    """
    package = publication.package
    body: dict[str, Any] = {
        "packageName": package.file_name,
        "fileName": package.file_name,
        "categoryId": NO_CATEGORY,
        "priority": PACKAGE_PRIORITY,
        "fillUserTemplate": False,
        "uninstall": False,
        "rebootRequired": False,
        "osInstall": False,
        "suppressUpdates": False,
        "suppressFromDock": False,
        "suppressEula": False,
        "suppressRegistration": False,
        "info": f"Installer for Jamf policy {publication.policy.policy_name}",
        "notes": (f"{RINGWARD_MARK} {publication.marker} sha256:{package.sha256} bytes:{package.size}"),
    }
    if sha512 is not None:
        body["hashType"] = HASH_TYPE
        body["hashValue"] = sha512
    return body


def script_body(publication: JamfPublication) -> dict[str, Any]:
    """The Jamf Pro API script record (runs after the package in the policy)."""
    return {
        "name": publication.script_name,
        "categoryId": NO_CATEGORY,
        "priority": "AFTER",
        "scriptContents": publication.script_contents,
        "info": f"Install step of Jamf policy {publication.policy.policy_name}, release {publication.release}",
        "notes": f"{RINGWARD_MARK} {publication.marker}",
    }


def multipart_boundary(sha256: str) -> str:
    """The boundary's first form: derived from the content's SHA-256 (stable bodies for evidence
    hashes and tests); lengthened with ``x`` while it occurs in the content."""
    return "ringward-" + sha256[:32]


def multipart_head(file_name: str, boundary: str) -> bytes:
    """What comes before the file's bytes in the one-part ``multipart/form-data`` body."""
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("ascii")


def multipart_tail(boundary: str) -> bytes:
    """What comes after the file's bytes (the closing delimiter)."""
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def multipart_file(file_name: str, content: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``file`` part, and its content type (in memory: the
    reference form of what :func:`prepare_upload` streams).

    The boundary is derived from the content (stable bodies for evidence hashes and tests) and
    lengthened until it does not occur in the content.
    """
    boundary = multipart_boundary(hashlib.sha256(content).hexdigest())
    while boundary.encode("ascii") in content:
        boundary += "x"
    body = multipart_head(file_name, boundary) + content + multipart_tail(boundary)
    return body, f"multipart/form-data; boundary={boundary}"


class BoundaryScan:
    """Finds, over a stream of chunks, how many ``x`` the boundary needs so it occurs nowhere in the
    content: the shortest ``base + "x" * k`` that is not in it (what :func:`multipart_file` finds by
    searching the whole content).

    ``base + "x" * k`` occurs iff some occurrence of ``base`` is followed by at least ``k`` ``x``,
    so it is enough to find every occurrence of ``base`` (one may span two chunks) and the run of
    ``x`` after it (a run may continue into later chunks). ``base`` contains no ``x``.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self._needle = base.encode("ascii")
        assert b"x" not in self._needle
        self._tail = b""
        #: the longest run of x after an occurrence so far (-1: no occurrence)
        self._longest = -1
        #: the run of x after an occurrence that reached the end of the data so far (still growing)
        self._open_run: int | None = None

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._open_run is not None:
            run = _x_run(chunk, 0)
            self._open_run += run
            if run == len(chunk):
                self._tail = (self._tail + chunk)[-(len(self._needle) - 1) :]
                return
            self._longest = max(self._longest, self._open_run)
            self._open_run = None
        data = self._tail + chunk
        start = 0
        while True:
            found = data.find(self._needle, start)
            if found < 0:
                break
            end = found + len(self._needle)
            run = _x_run(data, end)
            if end + run == len(data):
                self._open_run = run
            else:
                self._longest = max(self._longest, run)
            start = found + 1
        self._tail = data[-(len(self._needle) - 1) :]

    @property
    def boundary(self) -> str:
        """The boundary for the content fed so far."""
        longest = max(self._longest, -1 if self._open_run is None else self._open_run)
        return self.base + "x" * (longest + 1)


def _x_run(data: bytes, start: int) -> int:
    """How many ``x`` bytes follow ``start`` in ``data``."""
    match = _X_RUN.match(data, start)
    assert match is not None  # x* always matches
    return match.end() - start


@dataclass(frozen=True)
class PackageUpload:
    """A verified installer ready to upload: Jamf's hash of it and the streamed multipart body."""

    sha512: str
    body: StreamedBody
    content_type: str


def prepare_upload(reader: ArtifactReader, file_name: str) -> PackageUpload:
    """One pass over the installer: its SHA-256 checked against the event, its SHA-512 (Jamf's
    package hash), the multipart boundary and the digest of the whole body (evidence).

    The body then streams ``head || file || tail`` from a second pass over the same open file
    (checked again: a file changed since this pass abandons the upload before its last chunk), so
    it is byte for byte :func:`multipart_file` of the same content without ever being in memory.

    Raises:
        ArtifactError: the file is not the bytes the event names.
    """
    base = multipart_boundary(reader.item.sha256)
    scan = BoundaryScan(base)
    sha512 = hashlib.sha512()
    body_digest = hashlib.sha256(multipart_head(file_name, base))
    for chunk in reader.chunks():
        sha512.update(chunk)
        scan.feed(chunk)
        body_digest.update(chunk)
    boundary = scan.boundary
    head, tail = multipart_head(file_name, boundary), multipart_tail(boundary)
    if boundary == base:
        body_digest.update(tail)
    else:  # the content holds the first boundary (only a crafted file can): hash the body again
        body_digest = hashlib.sha256(head)
        for chunk in reader.chunks():
            body_digest.update(chunk)
        body_digest.update(tail)

    def chunks() -> itertools.chain[bytes]:
        return itertools.chain((head,), reader.chunks(), (tail,))

    body = StreamedBody(chunks=chunks, length=len(head) + reader.size + len(tail), sha256=body_digest.hexdigest())
    return PackageUpload(sha512.hexdigest(), body, f"multipart/form-data; boundary={boundary}")


def later_releases(publication: JamfPublication, script_names: tuple[str, ...]) -> list[str]:
    """Releases (canonical SemVer) of Ringward install scripts a policy runs that are later than this
    publication's; empty when either side has no comparable version."""
    mine = version_or_none(publication.release)
    if mine is None:
        return []
    prefix = f"{publication.policy.policy_name} install "
    later = []
    for name in script_names:
        if name.lower().startswith(prefix.lower()):
            theirs = version_or_none(name[len(prefix) :])
            if theirs is not None and mine < theirs:
                later.append(str(theirs))
    return later


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def policy_xml(
    publication: JamfPublication,
    *,
    package_id: str,
    script_id: str,
    group_ids: tuple[str, ...],
    creating: bool,
) -> bytes:
    """The Classic API ``<policy>`` document (built with ElementTree: values are always escaped).

    Without ``group_ids`` (review mode) the policy is disabled, a new one is unscoped and an update
    carries no ``<scope>`` (keeping a reviewer's): every new release waits for review in Jamf. With
    ``group_ids`` the policy is enabled and scoped to exactly those groups.
    """
    policy = ET.Element("policy")
    general = _sub(policy, "general")
    _sub(general, "name", publication.policy.policy_name)
    _sub(general, "enabled", "true" if group_ids else "false")
    _sub(general, "trigger", "EVENT")
    for flag in ("checkin", "enrollment_complete", "login", "network_state_changed", "startup"):
        _sub(general, f"trigger_{flag}", "false")
    _sub(general, "trigger_other", publication.policy.trigger)
    _sub(general, "frequency", "Ongoing")
    category = _sub(general, "category")
    _sub(category, "id", NO_CATEGORY)
    _sub(category, "name", "No category assigned")
    if group_ids or creating:
        scope = _sub(policy, "scope")
        _sub(scope, "all_computers", "false")
        groups = _sub(scope, "computer_groups")
        for group_id in group_ids:
            group = _sub(groups, "computer_group")
            _sub(group, "id", group_id)
    packages = _sub(_sub(policy, "package_configuration"), "packages")
    _sub(packages, "size", "1")
    package = _sub(packages, "package")
    _sub(package, "id", package_id)
    _sub(package, "action", "Install")
    scripts = _sub(policy, "scripts")
    _sub(scripts, "size", "1")
    script = _sub(scripts, "script")
    _sub(script, "id", script_id)
    _sub(script, "priority", "After")
    document: bytes = ET.tostring(policy, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


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

    def send(
        self,
        step: str,
        method: str,
        path: str,
        *,
        body: bytes | StreamedBody = b"",
        content_type: str | None = None,
        accept: str = JSON,
    ) -> Exchange:
        """One call. A successful answer cut at the read cap is refused (:class:`RefusedAnswer`)."""
        headers = {"accept": accept, "user-agent": USER_AGENT}
        headers.update(self.dest.headers)
        if content_type is not None:
            headers["content-type"] = content_type
        headers.update(self.auth)
        url = self.base + path
        if isinstance(body, StreamedBody):
            request = PreparedRequest(method=method, url=url, headers=headers, content=b"", stream=body)
        else:
            request = PreparedRequest(method=method, url=url, headers=headers, content=body)
        answer = exchange(self.client, request, self.left)
        self.calls.append((step, method, redact_url(request.url), answer.status_code))
        self.last = (step, answer)
        if answer.ok and answer.truncated:
            raise RefusedAnswer(
                f"answer larger than the {CONVERSATION_CAP_BYTES // (1024 * 1024)} MiB read cap "
                "(cut, not read); nothing was decided from it"
            )
        return answer

    def failed(
        self, step: str, answer: Exchange, *, error: str | None = None, outcome: Outcome | None = None
    ) -> Publication:
        """The Publication for a call that went wrong (the engine classifies its status unless ``outcome``)."""
        scrubber = self.dest.scrubber
        # an error of ours may quote a cut piece of the answer: pieces of secrets are masked too
        detail = scrubber.scrub_fragments(error) if error is not None else jamf_error(answer, scrubber)
        return Publication(
            last=answer,
            step=step,
            outcome=outcome,
            error=detail,
            calls=tuple(self.calls),
        )

    def refuse(self, error: str) -> Publication:
        """A final failure decided from the latest answer (a foreign record, a changed installer...)."""
        assert self.last is not None  # decided from an answer, so a call was made
        step, answer = self.last
        return self.failed(step, answer, error=error, outcome=Outcome.REJECTED)

    def not_sent(self, step: str, error: str) -> Publication:
        """A final failure found before sending (bad payload, bad artifact): nothing reached the tool."""
        return Publication.not_sent(step, self.dest.scrubber.scrub(error), calls=tuple(self.calls))

    def search(self, what: str, field_name: str, name: str) -> list[dict[str, Any]] | Publication:
        """Every ``what`` record (``packages``/``scripts``) named ``name`` (case-insensitively), read
        page by page until ``totalCount``; or the Publication of the search call that failed."""
        step = f"find {what[:-1]}"
        matches: list[dict[str, Any]] = []
        seen = 0
        for page in range(MAX_PAGES):
            query = urlencode(
                {"page": str(page), "page-size": str(PAGE_SIZE), "filter": rsql_filter(field_name, name)},
                quote_via=quote,
            )
            found = self.send(step, "GET", f"/api/v1/{what}?{query}")
            if not found.ok:
                return self.failed(step, found)
            results, total = _page(found)
            seen += len(results)
            matches.extend(r for r in results if same_name(str(r.get(field_name, "")), name))
            if not results or seen >= total:
                return matches
        raise RefusedAnswer(f"search still unfinished after {MAX_PAGES} pages of {PAGE_SIZE} (refused)")

    def find_or_create(
        self, what: str, field_name: str, name: str, body: bytes
    ) -> tuple[dict[str, Any] | None, str | None] | Publication:
        """The existing record (first) or the id of a new one (second); or the failure's Publication.

        A create refused as a duplicate means a concurrent delivery made the record meanwhile: it is
        searched for once more, and if still not found the failure is final (no retry loop).
        """
        kind = what[:-1]
        found = self.search(what, field_name, name)
        if isinstance(found, Publication):
            return found
        if found:
            return found[0], None  # Jamf keeps these names unique (case-insensitively)
        step = f"create {kind}"
        created = self.send(step, "POST", f"/api/v1/{what}", body=body, content_type=JSON)
        if created.ok:
            return None, _json_id(created)
        if not _is_duplicate(created):
            return self.failed(step, created)
        again = self.search(what, field_name, name)
        if isinstance(again, Publication):
            return again
        if again:
            return again[0], None
        return self.failed(
            step,
            created,
            error=f"Jamf says {kind} {name} exists but the search does not find it",
            outcome=Outcome.REJECTED,
        )


def _record_id(record: Mapping[str, Any], kind: str) -> str:
    value = str(record.get("id", ""))
    if not _JAMF_ID.match(value):
        raise RefusedAnswer(f"expected a numeric {kind} id, found {value[:40]!r}")
    return value


def _foreign(kind: str, jamf_name: str, name: str, why: str = "") -> str:
    """The final error for a same-named record Ringward did not make (``jamf_name``: Jamf's spelling)."""
    case = "" if jamf_name == name else f" (Jamf names are case-insensitive; this publication needs {name})"
    return f"{kind} {jamf_name} exists in Jamf but was not published by Ringward{why}{case}; rename or remove it"


class JamfPro(_FleetProvider):
    """Publishes Jamf export payloads to Jamf Pro through its own APIs (``mode: native``)."""

    kind = ProviderKind.JAMF

    def token_url(self, dest: ResolvedDestination) -> str:
        return dest.config.token_url or f"{dest.url.rstrip('/')}/api/oauth/token"

    def accepts(self, event: ConnectorEvent, dest: ResolvedDestination) -> bool:
        """Events carrying a Jamf export payload, and ``ringward connectors test`` (a read-only check)."""
        return has_jamf_payload(event) or event.event_type == TEST_EVENT_TYPE

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
            return self._connectivity_check(talk)
        try:
            publication = parse_jamf_publication(event)
        except ConnectorEventError as exc:
            return talk.not_sent("read jamf payload", str(exc))
        root = dest.config.artifact_root
        if root is None:
            return talk.not_sent(
                "verify artifact",
                f"destination {dest.name}: artifact_root is required to upload {publication.package.artifact}",
            )
        try:
            with open_artifact(root, publication.package) as reader:
                try:
                    upload = prepare_upload(reader, publication.package.file_name)
                except ArtifactError as exc:
                    return talk.not_sent("verify artifact", str(exc))
                return self._converse(talk, publication, upload)
        except ArtifactError as exc:
            return talk.not_sent("verify artifact", str(exc))

    def _converse(self, talk: _Conversation, publication: JamfPublication, upload: PackageUpload) -> Publication:
        try:
            package = self._package(talk, publication, upload)
            if isinstance(package, Publication):
                return package
            script = self._script(talk, publication)
            if isinstance(script, Publication):
                return script
            return self._policy(talk, publication, package, script)
        except RefusedAnswer as exc:
            assert talk.last is not None  # only answers are refused, so a call was made
            step, answer = talk.last
            return talk.failed(step, answer, error=str(exc), outcome=Outcome.REJECTED)

    @staticmethod
    def _connectivity_check(talk: _Conversation) -> Publication:
        """Token plus one authenticated read: proves URL, credentials and API reachability, changes nothing."""
        answer = talk.send("connectivity check", "GET", "/api/v1/jamf-pro-version")
        if not answer.ok:
            return talk.failed("connectivity check", answer)
        data = answer.json()
        version = data.get("version") if isinstance(data, dict) else None
        reference = f"Jamf Pro {excerpt(str(version), limit=40)}" if version else "Jamf Pro API reachable"
        return Publication(last=answer, step="connectivity check", external_ref=reference, calls=tuple(talk.calls))

    # -- steps ----------------------------------------------------------------------------------------
    # Each returns the record id, or the Publication of the call that failed.

    def _package(self, talk: _Conversation, publication: JamfPublication, upload: PackageUpload) -> str | Publication:
        name = publication.package.file_name
        sha512 = upload.sha512
        body = dumps_body(package_body(publication, sha512=None))
        outcome = talk.find_or_create("packages", "packageName", name, body)
        if isinstance(outcome, Publication):
            return outcome
        record, package_id = outcome
        if record is not None:
            if not is_ringward_record(record):
                return talk.refuse(_foreign("package", str(record.get("packageName", name)), name))
            package_id = _record_id(record, "package")
            theirs = str(record.get("hashValue") or "").lower()
            if record.get("hashType") == HASH_TYPE and theirs:
                if theirs == sha512:
                    return package_id  # this content was uploaded and recorded by an earlier run
                return talk.refuse(
                    f"package {name} already in Jamf with different content (sha512 {theirs[:16]}…, "
                    f"this release's {sha512[:16]}…); refusing to replace a published installer"
                )
        assert package_id is not None
        try:
            uploaded = talk.send(
                "upload package",
                "POST",
                f"/api/v1/packages/{package_id}/upload",
                body=upload.body,
                content_type=upload.content_type,
            )
        except ArtifactError as exc:
            # changed on disk since the first pass: the body was cut before its last chunk, so Jamf
            # never received a whole (wrong) file; the record keeps no hash and is uploaded again
            talk.calls.append(
                ("upload package", "POST", redact_url(f"{talk.base}/api/v1/packages/{package_id}/upload"), 0)
            )
            return Publication.not_sent(
                "upload package",
                talk.dest.scrubber.scrub(f"{exc} (the file changed while it was uploaded; upload abandoned)"),
                calls=tuple(talk.calls),
            )
        if not uploaded.ok:
            return talk.failed("upload package", uploaded)
        recorded = talk.send(
            "record package hash",
            "PUT",
            f"/api/v1/packages/{package_id}",
            body=dumps_body(package_body(publication, sha512=sha512)),
            content_type=JSON,
        )
        if not recorded.ok:
            return talk.failed("record package hash", recorded)
        return package_id

    def _script(self, talk: _Conversation, publication: JamfPublication) -> str | Publication:
        name = publication.script_name
        outcome = talk.find_or_create("scripts", "name", name, dumps_body(script_body(publication)))
        if isinstance(outcome, Publication):
            return outcome
        record, script_id = outcome
        if record is None:
            assert script_id is not None
            return script_id
        if not is_ringward_record(record):
            return talk.refuse(_foreign("script", str(record.get("name", name)), name))
        if record.get("scriptContents") != publication.script_contents:
            return talk.refuse(
                f"script {name} already in Jamf with other contents; refusing to change the install "
                "script of a published release (publish the change as a new release)"
            )
        return _record_id(record, "script")

    def _find_policy(
        self, talk: _Conversation, publication: JamfPublication, script_id: str
    ) -> str | Publication | None:
        """The id of Ringward's policy of this name, None when absent, or the failure's Publication
        (also when the policy already runs a LATER release than this one: switching it back would be
        a rollback, which must be reviewed, not published by a late event)."""
        found = self._lookup_policy(talk, publication, script_id)
        if not isinstance(found, tuple):
            return found
        policy_id, script_names = found
        later = later_releases(publication, script_names)
        if later:
            return talk.refuse(
                f"policy {publication.policy.policy_name} already runs release {later[0]}, later than "
                f"{publication.release}; refusing to switch it back (a rollback must be reviewed)"
            )
        return policy_id

    def _lookup_policy(
        self, talk: _Conversation, publication: JamfPublication, script_id: str
    ) -> tuple[str, tuple[str, ...]] | Publication | None:
        """Ringward's policy of this name and the names of the scripts it runs, None when absent."""
        name = publication.policy.policy_name
        path = f"/JSSResource/policies/name/{quote(name, safe='')}/subset/{POLICY_SUBSETS}"
        found = talk.send("find policy", "GET", path, accept=XML)
        if found.status_code == 404:
            return None
        if not found.ok:
            return talk.failed("find policy", found)
        policy = _parse_xml(found.text)
        policy_id = _policy_id(found.text, "general/id")
        jamf_name = (policy.findtext("general/name") or "").strip()
        if not same_name(jamf_name, name):
            raise RefusedAnswer(f"asked for policy {name!r}, Jamf answered with policy {jamf_name[:80]!r}")
        script_ids = [i for i in ((e.text or "").strip() for e in policy.findall("scripts/script/id")) if i]
        script_names = tuple((e.text or "").strip() for e in policy.findall("scripts/script/name"))
        if script_id in script_ids:
            return policy_id, script_names  # it runs this release's (Ringward) script
        for other in script_ids[:MAX_OWNER_LOOKUPS]:
            if not _JAMF_ID.match(other):
                continue
            read = talk.send("read script", "GET", f"/api/v1/scripts/{other}")
            if read.status_code == 404:
                continue
            if not read.ok:
                return talk.failed("read script", read)
            record = read.json()
            if isinstance(record, dict) and is_ringward_record(record):
                return policy_id, script_names
        talk.last = ("find policy", found)
        return talk.refuse(_foreign("policy", jamf_name, name, " (it runs no Ringward script)"))

    def _policy(
        self, talk: _Conversation, publication: JamfPublication, package_id: str, script_id: str
    ) -> Publication:
        policy_id = self._find_policy(talk, publication, script_id)
        if isinstance(policy_id, Publication):
            return policy_id
        group_ids = talk.dest.config.target_group_ids
        if policy_id is None:
            body = policy_xml(
                publication, package_id=package_id, script_id=script_id, group_ids=group_ids, creating=True
            )
            step = "create policy"
            answer = talk.send(step, "POST", "/JSSResource/policies/id/0", body=body, content_type=XML, accept=XML)
            if answer.ok:
                return self._made(talk, step, answer)
            if not _is_duplicate(answer):
                return talk.failed(step, answer)
            # made meanwhile by a concurrent delivery: look once more, then update it
            policy_id = self._find_policy(talk, publication, script_id)
            if isinstance(policy_id, Publication):
                return policy_id
            if policy_id is None:
                return talk.failed(
                    step,
                    answer,
                    error=f"Jamf says policy {publication.policy.policy_name} exists but the search does not find it",
                    outcome=Outcome.REJECTED,
                )
        body = policy_xml(publication, package_id=package_id, script_id=script_id, group_ids=group_ids, creating=False)
        step = "update policy"
        answer = talk.send(
            step, "PUT", f"/JSSResource/policies/id/{policy_id}", body=body, content_type=XML, accept=XML
        )
        if not answer.ok:
            return talk.failed(step, answer)
        return self._made(talk, step, answer)

    @staticmethod
    def _made(talk: _Conversation, step: str, answer: Exchange) -> Publication:
        made = _policy_id(answer.text, "id")
        return Publication(last=answer, step=step, external_ref=f"policy:{made}", calls=tuple(talk.calls))
