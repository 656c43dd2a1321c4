"""Redaction of delivery evidence: nothing that authenticates leaves the process in a record.

Three layers, each enough on its own for the cases it knows (fixing cavra-spec §7.6 / §11.15):

1. Headers: a value is replaced when the header name authenticates (``authorization``, any
   ``*token*``, ``*key*``, ``*secret*``, ``*signature*``, cookies, ...), whatever the provider.
2. URLs: userinfo and query strings are removed; secret-bearing webhook paths (Slack
   ``/services/...``, Discord-style ``/api/webhooks/...``, Teams/Office ``/webhookb2/...``, Power
   Automate / Logic Apps ``/workflows/...``, ``/hooks/...``) and long random-looking path segments
   are replaced; a URL that came from a secret reference keeps only scheme and host.
3. Values: every resolved secret (and its URL-encoded, JSON-escaped and derived forms) is scrubbed
   from every string of a record before it is stored, keys included.

Response excerpts (error texts quoting what a receiver answered) are scrubbed whole and only then
cut (:func:`excerpt` with a scrubber, :meth:`SecretScrubber.excerpt`): a secret straddling the cut
would otherwise survive as an unrecognisable fragment. As a second line, any run of at least
:data:`FRAGMENT_MIN_LENGTH` characters of a secret left in an excerpt (a provider that cut before
the scrubber saw the text) is masked too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

REDACTED = "REDACTED"

_SENSITIVE_HEADER_EXACT = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "dd-api-key",
        "dd-application-key",
        "x-functions-key",
        "ocp-apim-subscription-key",
        "webhook-signature",
        "x-hub-signature",
        "x-hub-signature-256",
        "x-slack-signature",
        "x-amz-security-token",
    }
)
_SENSITIVE_HEADER_WORDS = (
    "auth",
    "token",
    "secret",
    "key",
    "password",
    "signature",
    "cookie",
    "session",
    "credential",
)
#: header names containing a sensitive word that are nonetheless harmless
_HARMLESS_HEADERS = frozenset({"idempotency-key", "x-idempotency-key", "x-splunk-request-channel"})

#: path markers after which the rest of the path is a credential
_SECRET_PATH_MARKERS = (
    "/api/webhooks/",  # Discord and Discord-compatible: /api/webhooks/<id>/<token>
    "/webhookb2/",  # retired Office 365 connectors
    "/workflows/",  # Power Automate / Logic Apps (with sig= in the query)
    "/powerautomate/",
    "/hooks/",  # Mattermost, Rocket.Chat, generic relays
    "/webhook/",
    "/webhooks/",
)
_SECRET_HOST_SUFFIXES = (
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "webhook.office.com",
    "logic.azure.com",
)
_SLACK_PATH = re.compile(r"(/services/)T[A-Z0-9]{6,}/.*$")
_RANDOM_SEGMENT = re.compile(r"^[A-Za-z0-9_\-+=~.]{20,}$")
#: non-secret long identifiers that must stay readable (Sentinel DCR immutable ids)
_KNOWN_PUBLIC_SEGMENT = re.compile(r"^dcr-[0-9a-fA-F]{32}$|^Custom-[A-Za-z0-9_]+$|^Microsoft-[A-Za-z0-9_]+$")

_MIN_SECRET_LENGTH = 3
#: the shortest piece of a secret masked in an excerpt when the whole secret is not there
FRAGMENT_MIN_LENGTH = 8
#: query parameters whose value is a credential whatever it looks like
_SECRET_QUERY_PARAMS = frozenset({"sig", "code", "pwd", "pass", "apikey", "access_token"})


def is_sensitive_header(name: str) -> bool:
    """Whether a header's value authenticates and must never be recorded."""
    lowered = name.lower()
    if lowered in _HARMLESS_HEADERS:
        return False
    return lowered in _SENSITIVE_HEADER_EXACT or any(word in lowered for word in _SENSITIVE_HEADER_WORDS)


def _looks_random(segment: str) -> bool:
    if _KNOWN_PUBLIC_SEGMENT.match(segment) or not _RANDOM_SEGMENT.match(segment):
        return False
    return any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment)


def redact_url(url: str, *, whole_path_secret: bool = False) -> str:
    """A URL safe to record: no userinfo, no query, no fragment, no secret path.

    Args:
        url: the URL that was (or would be) requested.
        whole_path_secret: the URL itself is a credential (it came from a secret reference, or the
            provider is Slack/Teams); keep only scheme, host and port.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{REDACTED}@{netloc}"
    path = parts.path
    lowered_host = host.lower()
    if whole_path_secret or any(lowered_host.endswith(s) for s in _SECRET_HOST_SUFFIXES):
        path = f"/{REDACTED}" if path not in ("", "/") else path
    else:
        # Slack-shaped paths on relays: /services/T<team>/B<bot>/<token>
        path = _SLACK_PATH.sub(r"\1" + REDACTED, path)
        lowered = path.lower()
        hits = [(at, marker) for marker in _SECRET_PATH_MARKERS if (at := lowered.find(marker)) >= 0]
        if hits:
            at, marker = min(hits)
            if len(path) > at + len(marker):
                path = path[: at + len(marker)] + REDACTED
        path = "/".join(REDACTED if _looks_random(seg) else seg for seg in path.split("/"))
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased headers with every authenticating value replaced by ``REDACTED``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name.lower(): (REDACTED if is_sensitive_header(name) else value) for name, value in items}


class SecretScrubber:
    """Replaces every known secret (and its common encodings) inside recorded strings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._needles: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        #: values (all forms) whose pieces of FRAGMENT_MIN_LENGTH+ characters are masked in excerpts
        self._fragment_sources: set[str] = set()
        self._grams: frozenset[str] | None = None
        for secret in secrets:
            self.add(secret)

    def __len__(self) -> int:
        return len(self._needles)

    @property
    def needles(self) -> frozenset[str]:
        return frozenset(self._needles)

    def add(self, secret: str, *, fragments: bool = True) -> None:
        """Register a secret value (forms: raw, URL-encoded, JSON-escaped).

        Args:
            secret: the value.
            fragments: also mask pieces of it in excerpts (False for a value that is not random all
                through, such as a whole URL whose scheme and host are public).
        """
        if len(secret) < _MIN_SECRET_LENGTH:
            return
        if fragments and _is_url(secret):
            # its scheme and host are public: only its random parts are masked piecemeal
            self.add_url(secret)
            return
        forms = {secret, quote(secret, safe=""), quote(secret, safe="/:"), json.dumps(secret)[1:-1]}
        forms = {f for f in forms if len(f) >= _MIN_SECRET_LENGTH}
        self._needles.update(forms)
        self._pattern = None
        if fragments:
            self._fragment_sources.update(f for f in forms if len(f) >= FRAGMENT_MIN_LENGTH)
            self._grams = None

    def add_url(self, url: str) -> None:
        """Register a URL that is itself a credential, plus its path, query, credential-looking query
        values and long segments (only the last two are masked piecemeal in excerpts)."""
        self.add(url, fragments=False)
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        if len(parts.path) >= 8:
            self.add(parts.path, fragments=False)
        if parts.query:
            self.add(parts.query, fragments=False)
            for name, value in parse_qsl(parts.query, keep_blank_values=True):
                if len(value) >= FRAGMENT_MIN_LENGTH and (
                    is_sensitive_header(name) or name.lower() in _SECRET_QUERY_PARAMS or _looks_random(value)
                ):
                    self.add(value)
        for segment in parts.path.split("/"):
            if len(segment) >= 12:
                self.add(segment)

    def _compiled(self) -> re.Pattern[str] | None:
        if not self._needles:
            return None
        if self._pattern is None:
            ordered = sorted(self._needles, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(n) for n in ordered))
        return self._pattern

    def _fragment_grams(self) -> frozenset[str]:
        if self._grams is None:
            n = FRAGMENT_MIN_LENGTH
            self._grams = frozenset(
                source[i : i + n] for source in self._fragment_sources for i in range(len(source) - n + 1)
            )
        return self._grams

    def scrub(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``REDACTED``."""
        pattern = self._compiled()
        if pattern is None:
            return text
        return pattern.sub(REDACTED, text)

    def mask_fragments(self, text: str) -> str:
        """``text`` with every run of :data:`FRAGMENT_MIN_LENGTH` or more characters that is part of
        a registered secret replaced by ``REDACTED`` (for text that may have been cut mid-secret).

        A piece of a secret of that length is a sequence of overlapping windows of exactly that
        length, each one a piece of the secret: every such window is found with one set lookup per
        position, and the union of the windows found is masked.
        """
        grams = self._fragment_grams()
        n = FRAGMENT_MIN_LENGTH
        if not grams or len(text) < n:
            return text
        out: list[str] = []
        start = end = -1  # the run being masked: [start, end)
        done = 0  # text[:done] has been emitted
        for i in range(len(text) - n + 1):
            if text[i : i + n] not in grams:
                continue
            if i > end:  # a new run (runs that touch or overlap merge)
                if end >= 0:
                    out.append(text[done:start])
                    out.append(REDACTED)
                    done = end
                start = i
            end = i + n
        if end < 0:
            return text
        out.append(text[done:start])
        out.append(REDACTED)
        out.append(text[end:])
        return "".join(out)

    def scrub_fragments(self, text: str) -> str:
        """:meth:`scrub`, then :meth:`mask_fragments`: for text someone else may have cut."""
        return self.mask_fragments(self.scrub(text))

    def excerpt(self, text: str, *, limit: int = 300) -> str:
        """One line of at most ``limit`` characters of ``text``, scrubbed whole *before* it is cut,
        and with any piece of a secret left after cutting masked."""
        return self.mask_fragments(_cut(self.scrub(text), limit))

    def scrub_value(self, value: Any) -> Any:
        """Recursively scrub strings (keys too) in a JSON-like value."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {self.scrub(str(k)): self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_value(v) for v in value]
        return value

    def found_in(self, text: str) -> bool:
        pattern = self._compiled()
        return bool(pattern and pattern.search(text))


def _is_url(value: str) -> bool:
    if "://" not in value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


def _cut(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def excerpt(text: str, *, limit: int = 300, scrubber: SecretScrubber | None = None) -> str:
    """One line of at most ``limit`` characters (response bodies in error texts).

    With ``scrubber``, the whole text is scrubbed first and pieces of secrets left at the cut are
    masked (:meth:`SecretScrubber.excerpt`); any text that can carry a secret must be cut that way.
    """
    if scrubber is not None:
        return scrubber.excerpt(text, limit=limit)
    return _cut(text, limit)
