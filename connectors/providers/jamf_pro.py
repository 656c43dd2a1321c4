"""Native Jamf Pro publication: package record + uploaded installer, install script, policy.

The destination ``url`` is the Jamf Pro server (``https://acme.jamfcloud.com``). Authentication is a
Jamf Pro API client (``client_id`` + ``client_secret``; token from ``<server>/api/oauth/token`` or
``token_url``), whose Bearer token is accepted by both the Jamf Pro API and the Classic API.

One delivery is this conversation (every call through :func:`connectors.interface.exchange`)::

    GET  /api/v1/packages?filter=packageName=="<file>"         find package
    POST /api/v1/packages                                       create package      (absent)
    POST /api/v1/packages/{id}/upload   multipart "file"        upload package      (unverified)
    PUT  /api/v1/packages/{id}          + hashType/hashValue    record package hash (after upload)
    GET  /api/v1/scripts?filter=name=="<policy> install"       find script
    POST /api/v1/scripts | PUT /api/v1/scripts/{id}             create / update script (absent / changed)
    GET  /JSSResource/policies/name/<policy>                    find policy (404: absent)
    POST /JSSResource/policies/id/0 | PUT .../id/{id}           create / update policy (Classic XML)

Why it is shaped this way:

- The engine re-runs :meth:`JamfPro.publish` after any failed call (and a later run may repeat a
  delivery whose answer was lost), so every step looks up what an earlier attempt made and updates
  it rather than creating a second one. Records are found by name: the package by its file name,
  the script as ``"<policy_name> install"``, the policy by ``policy_name``.
- "Already uploaded" is recorded in Jamf itself: only after the upload succeeded does the package
  record get ``hashType: SHA_512`` and ``hashValue`` = the SHA-512 of the verified bytes (Jamf's own
  package hash field, the one JamfUploader compares too). A record without that hash (created, then
  the upload failed) is uploaded again; one with it is not. Setting the hash at create time would
  make a failed upload look finished.
- The installer is read from the destination's ``artifact_root`` and checked against the event's
  size and SHA-256 before anything is created in Jamf; a mismatch, a missing file or a path that
  leaves the root (absolute, ``..``, a symlink anywhere on the path) is a final failure.
- Policy XML is built with ElementTree (values are never spliced into markup); XML answers are read
  only when they carry no DTD, so no entity can be declared (no billion laughs, no external
  entities) — defusedxml is not a dependency of this project.
- A policy with no ``target_group_ids`` is created unscoped and disabled: published for review in
  Jamf. Updating such a policy leaves its ``<scope>`` and ``enabled`` alone (a Classic PUT changes only
  the elements it carries), so a reviewer's scoping survives the next publication.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET  # answers are parsed only by _parse_xml, which refuses DTDs
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from connectors.artifacts import ArtifactError, read_artifact
from connectors.interface import (
    JSON,
    USER_AGENT,
    Exchange,
    PreparedRequest,
    Publication,
    TimeLeft,
    dumps_body,
    exchange,
)
from connectors.providers.fleet import _FleetProvider
from connectors.secrets import ResolvedDestination
from ringward.core.connector_config import ProviderKind
from ringward.core.connector_event import TEST_EVENT_TYPE, ConnectorEvent
from ringward.core.delivery_policy import Outcome
from ringward.core.errors import ConnectorEventError
from ringward.core.jamf_publication import (
    JamfPublication,
    has_jamf_payload,
    parse_jamf_publication,
)
from ringward.core.redaction import excerpt, redact_url

XML = "application/xml"
#: Jamf's "no category" id (Jamf Pro API and Classic API)
NO_CATEGORY = "-1"
#: Jamf's default package priority (1-20)
PACKAGE_PRIORITY = 10
#: the hash type Ringward records on a package record once its content is uploaded
HASH_TYPE = "SHA_512"
_ERROR_LIMIT = 200
_FORBIDDEN_XML = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_HTML_NOISE = re.compile(r"<(head|style|script)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_JAMF_ID = re.compile(r"^[0-9]{1,18}$")


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


def _results(answer: Exchange) -> list[dict[str, Any]]:
    data = answer.json()
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise RefusedAnswer(f"expected a search answer with results[], found {excerpt(answer.text, limit=60)!r}")
    return [r for r in results if isinstance(r, dict)]


def jamf_error(answer: Exchange) -> str:
    """A short excerpt of a Jamf error: the Jamf Pro API ``errors[]`` envelope, or Classic HTML as text."""
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
            return excerpt("; ".join(parts), limit=_ERROR_LIMIT)
    text = answer.text
    if "<" in text:
        text = _TAG.sub(" ", _HTML_NOISE.sub(" ", text))
    return excerpt(text, limit=_ERROR_LIMIT)


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
        "notes": (f"Published by Ringward. {publication.marker} sha256:{package.sha256} bytes:{package.size}"),
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
        "info": f"Install step of Jamf policy {publication.policy.policy_name}",
        "notes": f"Published by Ringward. {publication.marker}",
    }


def multipart_file(file_name: str, content: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``file`` part, and its content type.

    The boundary is derived from the content (stable bodies for evidence hashes and tests) and
    lengthened until it does not occur in the content.
    """
    boundary = "ringward-" + hashlib.sha256(content).hexdigest()[:32]
    while boundary.encode("ascii") in content:
        boundary += "x"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("ascii")
    return head + content + f"\r\n--{boundary}--\r\n".encode("ascii"), f"multipart/form-data; boundary={boundary}"


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

    Without ``group_ids`` a new policy is unscoped and disabled (for review in Jamf) and an update
    carries neither ``<scope>`` nor ``<enabled>``, keeping whatever a reviewer set there.
    """
    policy = ET.Element("policy")
    general = _sub(policy, "general")
    _sub(general, "name", publication.policy.policy_name)
    if group_ids or creating:
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
        body: bytes = b"",
        content_type: str | None = None,
        accept: str = JSON,
    ) -> Exchange:
        headers = {"accept": accept, "user-agent": USER_AGENT}
        headers.update(self.dest.headers)
        if content_type is not None:
            headers["content-type"] = content_type
        headers.update(self.auth)
        request = PreparedRequest(method=method, url=self.base + path, headers=headers, content=body)
        answer = exchange(self.client, request, self.left)
        self.calls.append((step, method, redact_url(request.url), answer.status_code))
        self.last = (step, answer)
        return answer

    def failed(
        self, step: str, answer: Exchange, *, error: str | None = None, outcome: Outcome | None = None
    ) -> Publication:
        """The Publication for a call that went wrong (the engine classifies its status unless ``outcome``).

        A create refused because the name now exists means a concurrent delivery (another event for
        the same package or policy) made it meanwhile: retried, the next attempt finds and reuses it.
        """
        if outcome is None and step.startswith("create") and _is_duplicate(answer):
            outcome = Outcome.RETRY
        detail = error if error is not None else jamf_error(answer)
        return Publication(
            last=answer,
            step=step,
            outcome=outcome,
            error=self.dest.scrubber.scrub(detail),
            calls=tuple(self.calls),
        )

    def not_sent(self, step: str, error: str) -> Publication:
        """A final failure found before sending (bad payload, bad artifact): nothing reached the tool."""
        return Publication.not_sent(step, self.dest.scrubber.scrub(error), calls=tuple(self.calls))


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
            content = read_artifact(root, publication.package)
        except ArtifactError as exc:
            return talk.not_sent("verify artifact", str(exc))
        try:
            package = self._package(talk, publication, content)
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

    def _package(self, talk: _Conversation, publication: JamfPublication, content: bytes) -> str | Publication:
        name = publication.package.file_name
        query = urlencode(
            {"page": "0", "page-size": "100", "filter": rsql_filter("packageName", name)}, quote_via=quote
        )
        found = talk.send("find package", "GET", f"/api/v1/packages?{query}")
        if not found.ok:
            return talk.failed("find package", found)
        existing = [r for r in _results(found) if r.get("packageName") == name]
        sha512 = hashlib.sha512(content).hexdigest()
        if existing:
            record = existing[0]  # Jamf keeps package names unique
            package_id = str(record.get("id", ""))
            if not _JAMF_ID.match(package_id):
                raise RefusedAnswer(f"expected a numeric package id, found {package_id[:40]!r}")
            if record.get("hashType") == HASH_TYPE and str(record.get("hashValue", "")).lower() == sha512:
                return package_id  # this content was uploaded and recorded by an earlier run
        else:
            created = talk.send(
                "create package",
                "POST",
                "/api/v1/packages",
                body=dumps_body(package_body(publication, sha512=None)),
                content_type=JSON,
            )
            if not created.ok:
                return talk.failed("create package", created)
            package_id = _json_id(created)
        body, content_type = multipart_file(name, content)
        uploaded = talk.send(
            "upload package", "POST", f"/api/v1/packages/{package_id}/upload", body=body, content_type=content_type
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
        query = urlencode({"page": "0", "page-size": "100", "filter": rsql_filter("name", name)}, quote_via=quote)
        found = talk.send("find script", "GET", f"/api/v1/scripts?{query}")
        if not found.ok:
            return talk.failed("find script", found)
        existing = [r for r in _results(found) if r.get("name") == name]
        body = dumps_body(script_body(publication))
        if not existing:
            created = talk.send("create script", "POST", "/api/v1/scripts", body=body, content_type=JSON)
            if not created.ok:
                return talk.failed("create script", created)
            return _json_id(created)
        script_id = str(existing[0].get("id", ""))
        if not _JAMF_ID.match(script_id):
            raise RefusedAnswer(f"expected a numeric script id, found {script_id[:40]!r}")
        if existing[0].get("scriptContents") != publication.script_contents:
            updated = talk.send("update script", "PUT", f"/api/v1/scripts/{script_id}", body=body, content_type=JSON)
            if not updated.ok:
                return talk.failed("update script", updated)
        return script_id

    def _policy(
        self, talk: _Conversation, publication: JamfPublication, package_id: str, script_id: str
    ) -> Publication:
        name = quote(publication.policy.policy_name, safe="")
        found = talk.send("find policy", "GET", f"/JSSResource/policies/name/{name}", accept=XML)
        if found.status_code == 404:
            policy_id = None
        elif not found.ok:
            return talk.failed("find policy", found)
        else:
            policy_id = _policy_id(found.text, "general/id")
        group_ids = talk.dest.config.target_group_ids
        body = policy_xml(
            publication, package_id=package_id, script_id=script_id, group_ids=group_ids, creating=policy_id is None
        )
        step = "create policy" if policy_id is None else "update policy"
        path = f"/JSSResource/policies/id/{policy_id or 0}"
        answer = talk.send(step, "POST" if policy_id is None else "PUT", path, body=body, content_type=XML, accept=XML)
        if not answer.ok:
            return talk.failed(step, answer)
        made = _policy_id(answer.text, "id")
        return Publication(last=answer, step=step, external_ref=f"policy:{made}", calls=tuple(talk.calls))
