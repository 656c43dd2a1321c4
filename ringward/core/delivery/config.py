"""Connector configuration (``connectors.yaml`` / ``.json``): validated as a whole, every problem
reported with its path.

Native shape::

    schema_version: ringward.connectors.v1
    defaults: {timeout_seconds: 10, budget_seconds: 60, max_attempts: 5}
    providers:
      - name: splunk-soc
        provider: splunk
        url: https://splunk.example.com:8088/services/collector/event
        token: env:SPLUNK_HEC_TOKEN
        index: release_audit

The reference shape (``{"connectors": {<provider>: {...}}}``, ``{"providers": {...}}`` or the bare
map; cavra-spec §7.2) is accepted: ``url_env``/``token_env``/``authorization_env``/``api_key_env``
become ``env:`` references and the map key becomes the destination name.

Rules:

- Secrets are never inline: every secret-bearing field takes ``env:NAME`` or
  ``prefect-secret:NAME``; inline ``token``/``authorization``/``api_key`` values, credentials in
  URLs, secret-looking query parameters and inline Slack/Teams webhook URLs (the URL is the secret)
  are refused.
- URLs are ``https://``; plain ``http://`` only for loopback hosts (tests, local relays).
- Destination names are unique; they are part of the idempotency key.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from ringward.core.common.jsonio import loads_strict
from ringward.core.delivery.event import ConnectorEvent, Severity, format_validation_error
from ringward.core.delivery.policy import DeliveryPolicy
from ringward.core.errors import ConnectorConfigError, MalformedDocumentError

CONNECTORS_SCHEMA = "ringward.connectors.v1"


class ProviderKind(StrEnum):
    """Every provider Ringward delivers to."""

    SPLUNK = "splunk"
    SENTINEL = "sentinel"
    DATADOG = "datadog"
    WEBHOOK = "webhook"
    SLACK = "slack"
    TEAMS = "teams"
    JIRA = "jira"
    SERVICENOW = "servicenow"
    PAGERDUTY = "pagerduty"
    JAMF = "jamf"
    INTUNE = "intune"
    LINUX = "linux"
    PRIVATE_QUEUE = "private_queue"


class PublishMode(StrEnum):
    """How Jamf Pro and Intune destinations publish (other providers ignore it)."""

    #: the tool's own API: Jamf Pro API / Classic API, Microsoft Graph (create, upload, commit)
    NATIVE = "native"
    #: POST the reference system's publication envelope to an in-house receiver
    RELAY = "relay"


#: providers whose endpoints accept gzip-compressed bodies
GZIP_PROVIDERS = frozenset({ProviderKind.SPLUNK, ProviderKind.SENTINEL, ProviderKind.DATADOG})

#: providers with a native publication mode
NATIVE_PUBLISH_PROVIDERS = frozenset({ProviderKind.JAMF, ProviderKind.INTUNE})

#: providers whose whole URL is a credential (anyone holding it can post)
SECRET_URL_PROVIDERS = frozenset({ProviderKind.SLACK, ProviderKind.TEAMS})

_SECRET_REF = re.compile(r"^(env|prefect-secret):([A-Za-z0-9_][A-Za-z0-9_./-]{0,127})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
#: header names whose value authenticates; inline values are refused
_AUTH_HEADER_WORDS = (
    "authorization",
    "token",
    "secret",
    "api-key",
    "apikey",
    "api_key",
    "password",
    "cookie",
)
#: query parameter names that carry credentials (Teams/Logic Apps ``sig``, SAS, tokens)
_SECRET_QUERY_WORDS = ("sig", "token", "key", "secret", "password", "code", "signature", "auth", "sv", "sp")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A reference to a secret: ``env:NAME`` (environment) or ``prefect-secret:NAME`` (Secret block)."""

    scheme: Literal["env", "prefect-secret"]
    name: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}"

    @classmethod
    def parse(cls, value: str) -> SecretRef:
        match = _SECRET_REF.match(value)
        if not match:
            raise ValueError(
                "must be a secret reference env:NAME or prefect-secret:NAME (secrets are never inline)"
            )
        scheme = match.group(1)
        assert scheme in ("env", "prefect-secret")
        return cls(scheme="env" if scheme == "env" else "prefect-secret", name=match.group(2))


def is_secret_ref(value: object) -> bool:
    return isinstance(value, str) and bool(_SECRET_REF.match(value))


def _to_secret_ref(value: object) -> object:
    if isinstance(value, SecretRef):
        return value
    if isinstance(value, str):
        return SecretRef.parse(value)
    raise ValueError("must be a secret reference string env:NAME or prefect-secret:NAME")


SecretField = Annotated[SecretRef, BeforeValidator(_to_secret_ref), PlainSerializer(str, return_type=str)]


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, *, allow_query_secrets: bool = False) -> str:
    """Validate a destination URL (https, or http on loopback; no credentials, no fragment).

    Raises:
        ValueError: with the reason (used as the field message).
    """
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from exc
    if parts.scheme == "http":
        if not is_loopback_host(host):
            raise ValueError("not an https URL (plain http is allowed only for loopback hosts)")
    elif parts.scheme != "https":
        raise ValueError("not an https URL")
    if not host:
        raise ValueError("URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are inline secrets; use username/password references")
    if parts.fragment:
        raise ValueError("URL must not have a fragment")
    if not allow_query_secrets:
        for key, _v in parse_qsl(parts.query, keep_blank_values=True):
            lowered = key.lower()
            if any(word in re.split(r"[-_.]", lowered) for word in _SECRET_QUERY_WORDS):
                raise ValueError(
                    f"query parameter {key!r} looks like a credential; put the whole URL in a secret "
                    "(env:NAME or prefect-secret:NAME)"
                )
    return value


def _url_or_ref(value: object) -> object:
    if isinstance(value, str) and is_secret_ref(value):
        return SecretRef.parse(value)
    return value


UrlField = Annotated[SecretRef | str, BeforeValidator(_url_or_ref), PlainSerializer(str, return_type=str)]


class PolicyOverrides(BaseModel):
    """Delivery limits (all optional); see :class:`~ringward.core.delivery_policy.DeliveryPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_seconds: float | None = Field(default=None, gt=0, le=300)
    budget_seconds: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int | None = Field(default=None, ge=1, le=50)
    backoff_base_seconds: float | None = Field(default=None, ge=0, le=600)
    backoff_cap_seconds: float | None = Field(default=None, ge=0, le=3600)
    jitter: float | None = Field(default=None, ge=0, le=1)
    max_in_flight: int | None = Field(default=None, ge=1, le=256)
    redeliver_window_seconds: float | None = Field(default=None, ge=0, le=30 * 86400)

    def apply(self, base: DeliveryPolicy) -> DeliveryPolicy:
        values = {k: getattr(self, k) for k in PolicyOverrides.model_fields if getattr(self, k) is not None}
        fields: dict[str, Any] = {
            "timeout_seconds": base.timeout_seconds,
            "budget_seconds": base.budget_seconds,
            "max_attempts": base.max_attempts,
            "backoff_base_seconds": base.backoff_base_seconds,
            "backoff_cap_seconds": base.backoff_cap_seconds,
            "jitter": base.jitter,
            "max_in_flight": base.max_in_flight,
            "redeliver_window_seconds": base.redeliver_window_seconds,
        }
        fields.update(values)
        return DeliveryPolicy(**fields)


class DestinationConfig(PolicyOverrides):
    """One configured destination (a provider instance)."""

    #: destination name, unique in the file; part of the idempotency key
    name: str
    provider: ProviderKind
    enabled: bool = True
    #: endpoint URL (or a secret reference when the URL itself is a credential)
    url: UrlField | None = None
    method: Literal["POST", "PUT"] = "POST"
    #: extra non-secret headers; a credential header takes a secret reference as its value
    headers: dict[str, str] = Field(default_factory=dict)

    #: at most this many deliveries to this destination at once across every flow run and worker: a
    #: Prefect global concurrency limit ``ringward-destination-<name>`` (flow runs only; the CLI's
    #: in-process path is one process and uses ``max_in_flight``)
    concurrency_limit: int | None = Field(default=None, ge=1, le=256)
    #: at most this many deliveries per minute to this destination across every flow run and worker
    #: (e.g. an ITSM API's quota): a Prefect global rate limit ``ringward-destination-<name>-rate``
    rate_limit_per_minute: float | None = Field(default=None, gt=0, le=60_000)

    # -- credentials (secret references only) --
    token: SecretField | None = None
    authorization: SecretField | None = None
    authorization_scheme: str = Field(default="Bearer", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,31}$")
    api_key: SecretField | None = None
    api_key_header: str | None = None
    username: str | None = Field(default=None, max_length=256)
    password: SecretField | None = None
    email: str | None = Field(default=None, max_length=256)
    api_token: SecretField | None = None
    signing_secret: SecretField | None = None
    #: a second Standard Webhooks secret signed with during a rotation (receivers accept either)
    signing_secret_previous: SecretField | None = None
    #: Standard Webhooks ``v1a`` Ed25519 secret key (``whsk_<base64>``); receivers pin its ``whpk_``
    signing_key: SecretField | None = None
    routing_key: SecretField | None = None
    client_id: str | None = Field(default=None, max_length=256)
    client_secret: SecretField | None = None
    tenant_id: str | None = Field(default=None, max_length=256)
    token_url: str | None = None
    scope: str | None = Field(default=None, max_length=512)

    # -- routing fields --
    title: str | None = Field(default=None, max_length=250)
    index: str | None = Field(default=None, max_length=128)
    source: str | None = Field(default=None, max_length=256)
    sourcetype: str | None = Field(default=None, max_length=256)
    host: str | None = Field(default=None, max_length=256)
    request_channel: str | None = Field(default=None, max_length=64)
    #: Splunk HEC indexer acknowledgement (useACK tokens): a delivery counts only once the ackId is
    #: acknowledged as indexed; not acknowledged within ``ack_timeout_seconds`` -> resent (the wait is
    #: part of the attempt, so it is also bounded by ``timeout_seconds``)
    indexer_ack: bool = False
    ack_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    service: str | None = Field(default=None, max_length=256)
    ddsource: str | None = Field(default=None, max_length=256)
    ddtags: str | None = Field(default=None, max_length=1024)
    dcr_immutable_id: str | None = Field(default=None, pattern=r"^dcr-[0-9a-fA-F]{32}$")
    stream_name: str | None = Field(
        default=None, pattern=r"^Custom-[A-Za-z0-9_]{1,100}$|^Microsoft-[A-Za-z0-9_]+$"
    )
    project_key: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{0,49}$")
    issue_type: str = Field(default="Task", min_length=1, max_length=100)
    labels: tuple[str, ...] = ()
    priority: str | None = Field(default=None, max_length=64)
    table: str = Field(default="incident", pattern=r"^[a-z][a-z0-9_]{0,79}$")
    assignment_group: str | None = Field(default=None, max_length=256)
    caller_id: str | None = Field(default=None, max_length=256)
    category: str = Field(default="software", max_length=64)
    directory: str | None = Field(default=None, max_length=4096)

    # -- endpoint-management publication (jamf, intune) --
    #: native (the tool's API, default) or relay (the reference envelope to ``url``)
    mode: PublishMode | None = None
    #: directory holding the export artifacts named by publication events (installer content is
    #: read from here, confined to it, and checked against the event's sha256 before upload)
    artifact_root: str | None = Field(default=None, max_length=4096)
    #: Jamf computer group ids / Entra group object ids the published policy or app is scoped or
    #: assigned to; empty: published unscoped, for review in the tool before assignment
    target_group_ids: tuple[str, ...] = ()

    # -- routing filter --
    #: only deliver events whose type matches one of these globs (empty: every type)
    event_types: tuple[str, ...] = ()
    #: only deliver events at or above this severity
    min_severity: Severity | None = None

    # -- batching (providers that take batches) --
    batch_max_events: int | None = Field(default=None, ge=1, le=1000)
    batch_max_bytes: int | None = Field(default=None, ge=1024, le=5_000_000)
    #: compress request bodies (splunk, sentinel, datadog: all accept ``Content-Encoding: gzip``);
    #: batch limits still count uncompressed bytes, as the receivers do
    compression: Literal["gzip"] | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-64 characters [a-z0-9_.-] starting with a letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretRef | str | None) -> SecretRef | str | None:
        if isinstance(value, str):
            check_url(value)
        return value

    @field_validator("token_url")
    @classmethod
    def _check_token_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            lowered = name.lower()
            if any(word in lowered for word in _AUTH_HEADER_WORDS) and not is_secret_ref(header_value):
                raise ValueError(
                    f"header {name!r} carries a credential; its value must be env:NAME or prefect-secret:NAME"
                )
            if "\r" in header_value or "\n" in header_value:
                raise ValueError(f"header {name!r} value contains a line break")
            out[lowered] = header_value
        return out

    def policy(self, defaults: DeliveryPolicy) -> DeliveryPolicy:
        return self.apply(defaults)

    @property
    def publish_mode(self) -> PublishMode:
        """The effective publication mode (native unless ``mode: relay``)."""
        return self.mode or PublishMode.NATIVE

    def accepts(self, event: ConnectorEvent) -> bool:
        """Whether this destination's routing filter selects ``event``."""
        if self.event_types and not any(fnmatch.fnmatchcase(event.event_type, p) for p in self.event_types):
            return False
        if self.min_severity is not None:
            order = list(Severity)
            if order.index(event.severity) < order.index(self.min_severity):
                return False
        return True


class ConnectorConfig(BaseModel):
    """The whole connector file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.connectors.v1"] = "ringward.connectors.v1"
    defaults: PolicyOverrides = PolicyOverrides()
    providers: tuple[DestinationConfig, ...] = Field(min_length=1)

    def default_policy(self) -> DeliveryPolicy:
        return self.defaults.apply(DeliveryPolicy())

    def destination(self, name: str) -> DestinationConfig:
        for dest in self.providers:
            if dest.name == name:
                return dest
        raise KeyError(name)

    def select(self, selector: str) -> tuple[DestinationConfig, ...]:
        """Destinations for a ``--provider`` value: ``all``, or a comma list of names or kinds.

        Raises:
            ConnectorConfigError: a requested name or kind is not configured (or is disabled).
        """
        enabled = tuple(d for d in self.providers if d.enabled)
        if selector.strip() in ("", "all"):
            return enabled
        chosen: list[DestinationConfig] = []
        for item in (part.strip() for part in selector.split(",")):
            if not item:
                continue
            matches = [d for d in enabled if item in (d.name, d.provider.value)]
            if not matches:
                configured = ", ".join(sorted(d.name for d in self.providers)) or "none"
                raise ConnectorConfigError(
                    f"connector provider is not configured or is disabled: {item} (configured: {configured})"
                )
            chosen.extend(m for m in matches if m not in chosen)
        return tuple(chosen)


# --- required fields per provider -------------------------------------------------------------------

#: provider -> tuples of alternative credential field groups; one group must be complete
_AUTH_REQUIREMENTS: dict[ProviderKind, tuple[tuple[str, ...], ...]] = {
    ProviderKind.SPLUNK: (("token",), ("authorization",)),
    ProviderKind.SENTINEL: (
        ("token",),
        ("tenant_id", "client_id", "client_secret"),
        ("client_id", "client_secret", "token_url"),
    ),
    ProviderKind.DATADOG: (("api_key",),),
    ProviderKind.JIRA: (("email", "api_token"), ("token",), ("authorization",)),
    ProviderKind.SERVICENOW: (("username", "password"), ("token",), ("authorization",)),
    ProviderKind.PAGERDUTY: (("routing_key",),),
    ProviderKind.WEBHOOK: (("signing_secret",), ("signing_key",)),
}

_DEFAULT_URLS: dict[ProviderKind, str] = {
    ProviderKind.PAGERDUTY: "https://events.pagerduty.com/v2/enqueue",
}


def _semantic_problems(dest: DestinationConfig, path: str) -> list[str]:
    problems: list[str] = []
    kind = dest.provider
    if kind is ProviderKind.PRIVATE_QUEUE:
        if (dest.url is None) == (dest.directory is None):
            problems.append(f"{path}.url: private_queue needs exactly one of url or directory")
    elif dest.url is None and kind not in _DEFAULT_URLS:
        problems.append(f"{path}.url: required for {kind.value} (a URL or env:NAME / prefect-secret:NAME)")
    if kind in SECRET_URL_PROVIDERS and isinstance(dest.url, str):
        problems.append(
            f"{path}.url: a {kind.value} webhook URL is a credential; "
            "reference it as env:NAME or prefect-secret:NAME"
        )
    groups = _AUTH_REQUIREMENTS.get(kind)
    if groups and not any(all(getattr(dest, f) is not None for f in group) for group in groups):
        wanted = " or ".join("+".join(group) for group in groups)
        problems.append(f"{path}.{groups[0][0]}: {kind.value} needs credentials: {wanted}")
    if kind is ProviderKind.SENTINEL:
        if dest.dcr_immutable_id is None:
            problems.append(f"{path}.dcr_immutable_id: required for sentinel (dcr-<32 hex>)")
        if dest.stream_name is None:
            problems.append(f"{path}.stream_name: required for sentinel (Custom-<Table>_CL)")
    if kind is not ProviderKind.WEBHOOK:
        for field_name in ("signing_secret_previous", "signing_key"):
            if getattr(dest, field_name) is not None:
                problems.append(f"{path}.{field_name}: only webhook destinations take it")
    elif dest.signing_secret_previous is not None and dest.signing_secret is None:
        problems.append(f"{path}.signing_secret_previous: needs signing_secret (the new secret)")
    if dest.compression is not None and kind not in GZIP_PROVIDERS:
        problems.append(f"{path}.compression: only splunk, sentinel and datadog destinations take it")
    if dest.indexer_ack and kind is not ProviderKind.SPLUNK:
        problems.append(f"{path}.indexer_ack: only splunk destinations take it")
    if dest.indexer_ack and not dest.request_channel:
        problems.append(f"{path}.request_channel: required with indexer_ack (the HEC channel GUID)")
    if kind is ProviderKind.JIRA and dest.project_key is None:
        problems.append(f"{path}.project_key: required for jira")
    if (
        kind in (ProviderKind.JAMF, ProviderKind.INTUNE)
        and dest.client_id is not None
        and dest.client_secret is None
    ):
        problems.append(f"{path}.client_secret: required with client_id")
    if (
        kind is ProviderKind.INTUNE
        and dest.client_id is not None
        and dest.tenant_id is None
        and dest.token_url is None
    ):
        problems.append(f"{path}.tenant_id: required with client_id (or set token_url)")
    if kind not in NATIVE_PUBLISH_PROVIDERS:
        for field_name in ("mode", "artifact_root"):
            if getattr(dest, field_name) is not None:
                problems.append(f"{path}.{field_name}: only jamf and intune destinations take it")
        if dest.target_group_ids:
            problems.append(f"{path}.target_group_ids: only jamf and intune destinations take it")
    for n, group_id in enumerate(dest.target_group_ids):
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", group_id):
            problems.append(
                f"{path}.target_group_ids[{n}]: expected a group id ([A-Za-z0-9-], 1-64), found {group_id!r}"
            )
    for n, pattern in enumerate(dest.event_types):
        if not pattern or len(pattern) > 128:
            problems.append(f"{path}.event_types[{n}]: must be a 1-128 character glob")
    return problems


def default_url(kind: ProviderKind) -> str | None:
    return _DEFAULT_URLS.get(kind)


# --- reference shape --------------------------------------------------------------------------------

_REFERENCE_ENV_FIELDS = {
    "url_env": "url",
    "token_env": "token",
    "authorization_env": "authorization",
    "api_key_env": "api_key",
}


def _from_reference(entries: dict[str, Any], root: str) -> tuple[list[Any], list[str], list[str]]:
    """Reference provider map -> native provider list, origin paths and early problems."""
    providers: list[Any] = []
    origins: list[str] = []
    problems: list[str] = []
    for key, raw in entries.items():
        origin = f"{root}.{key}" if root else str(key)
        if not isinstance(raw, dict):
            problems.append(f"{origin}: connector {key} config must be an object")
            continue
        item: dict[str, Any] = {}
        for field, value in raw.items():
            if field in _REFERENCE_ENV_FIELDS:
                if not isinstance(value, str) or not value:
                    problems.append(f"{origin}.{field}: must name an environment variable")
                    continue
                item[_REFERENCE_ENV_FIELDS[field]] = f"env:{value}"
            elif field == "ref" or field == "event_type":
                continue  # CI-trigger providers (github, gitlab) are not Ringward connectors
            else:
                item[field] = value
        item.setdefault("name", str(key).lower().replace(" ", "-"))
        item.setdefault("provider", str(key).lower())
        if item["provider"] in ("jamf", "intune"):
            item.setdefault("mode", "relay")  # the reference posts its envelope to a receiver
        providers.append(item)
        origins.append(origin)
    return providers, origins, problems


def _normalise_root(document: Any) -> tuple[dict[str, Any], list[str], list[str]]:
    """Any accepted shape -> native document, origin path per provider, early problems."""
    if not isinstance(document, dict):
        return {}, [], ["<root>: connector config must be an object"]
    if "connectors" in document and isinstance(document["connectors"], dict):
        rest = {k: v for k, v in document.items() if k != "connectors"}
        providers, origins, problems = _from_reference(document["connectors"], "connectors")
        return {**rest, "providers": providers}, origins, problems
    if isinstance(document.get("providers"), dict):
        rest = {k: v for k, v in document.items() if k != "providers"}
        providers, origins, problems = _from_reference(document["providers"], "providers")
        return {**rest, "providers": providers}, origins, problems
    if "providers" in document or "schema_version" in document or "defaults" in document:
        raw = document.get("providers")
        origins = [f"providers[{n}]" for n in range(len(raw))] if isinstance(raw, list) else []
        return dict(document), origins, []
    if document and all(isinstance(v, dict) for v in document.values()):
        providers, origins, problems = _from_reference(document, "")
        return {"providers": providers}, origins, problems
    return dict(document), [], []


def _rewrite_path(problem: str, origins: list[str]) -> str:
    match = re.match(r"^providers\[(\d+)\]", problem)
    if match and origins:
        index = int(match.group(1))
        if index < len(origins):
            return origins[index] + problem[match.end() :]
    return problem


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (two readers must see one config)."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config_document(data: bytes, *, source: str) -> Any:
    """Parse config bytes as JSON (``.json``) or YAML (anything else).

    Raises:
        ConnectorConfigError: unparseable.
    """
    if source.lower().endswith(".json"):
        try:
            return loads_strict(data, source=source, max_bytes=4 * 1024 * 1024)
        except MalformedDocumentError as exc:
            raise ConnectorConfigError(str(exc)) from exc
    try:
        return yaml.load(data.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise ConnectorConfigError(f"{source}: not UTF-8") from exc
    except yaml.YAMLError as exc:
        # PyYAML names a string input "<unicode string>"; the user knows the file
        detail = " ".join(str(exc).split()).replace('in "<unicode string>", ', "")
        raise ConnectorConfigError(f"{source}: invalid YAML: {detail}") from exc


def parse_connector_config(data: bytes, *, source: str, base_dir: str | None = None) -> ConnectorConfig:
    """Parse and validate a connector file, reporting every problem with its path.

    ``base_dir`` (the file's own directory) anchors relative paths inside the file (see
    :func:`resolve_relative_paths`); without it they are left as written.

    Raises:
        ConnectorConfigError: with ``problems`` such as ``providers[2].url: not an https URL``.
    """
    document = load_config_document(data, source=source)
    if document is None:
        message = f"{source}: empty file; expected a connector config (schema_version, providers)"
        raise ConnectorConfigError(message, (message,))
    config = validate_connector_config(document, source=source)
    return config if base_dir is None else resolve_relative_paths(config, base_dir)


#: destination fields naming a file-system path (relative ones are relative to the config file)
PATH_FIELDS = ("directory", "artifact_root")


def resolve_relative_paths(config: ConnectorConfig, base_dir: str) -> ConnectorConfig:
    """Anchor every relative path field (:data:`PATH_FIELDS`) at ``base_dir``, the directory of the
    connector file, so a config means the same thing whatever the working directory."""
    providers = []
    for dest in config.providers:
        update = {
            name: os.path.join(base_dir, value)
            for name in PATH_FIELDS
            if isinstance(value := getattr(dest, name), str) and value and not os.path.isabs(value)
        }
        providers.append(dest.model_copy(update=update) if update else dest)
    return config.model_copy(update={"providers": tuple(providers)})


def _problems_beyond_type_errors(item: Any, path: str) -> list[str]:
    """Semantic problems of an entry that failed type validation, judged without its bad fields
    (so a bad URL does not hide a missing token)."""
    if not isinstance(item, dict):
        return []
    try:
        return _semantic_problems(DestinationConfig.model_validate(item), path)
    except ValidationError as exc:
        bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
    if bad & {"name", "provider"}:
        return []
    try:
        dest = DestinationConfig.model_validate({k: v for k, v in item.items() if k not in bad})
    except ValidationError:
        return []
    return [p for p in _semantic_problems(dest, path) if p.split(":", 1)[0].rsplit(".", 1)[-1] not in bad]


def validate_connector_config(document: Any, *, source: str) -> ConnectorConfig:
    """Validate an already parsed document (see :func:`parse_connector_config`)."""
    native, origins, problems = _normalise_root(document)
    if not isinstance(document, dict):
        raise ConnectorConfigError(f"{source}: 1 problem: {problems[0]}", tuple(problems))
    config: ConnectorConfig | None = None
    try:
        config = ConnectorConfig.model_validate(native)
    except ValidationError as exc:
        found = format_validation_error(exc)
        if any(p.startswith("providers[") for p in found):
            # pydantic adds a length error for a tuple whose items failed; the item errors say it all
            found = tuple(p for p in found if not p.startswith("providers: "))
        problems.extend(_rewrite_path(p, origins) for p in found)
    if config is not None:
        seen: dict[str, int] = {}
        for n, dest in enumerate(config.providers):
            path = origins[n] if n < len(origins) else f"providers[{n}]"
            if dest.name in seen:
                problems.append(
                    f"{path}.name: duplicate destination name {dest.name!r} "
                    f"(also providers[{seen[dest.name]}])"
                )
            seen.setdefault(dest.name, n)
            problems.extend(_semantic_problems(dest, path))
    else:
        # type errors stop pydantic early per entry; still report semantic gaps of entries that parse
        raw = native.get("providers") if isinstance(native, dict) else None
        if isinstance(raw, list):
            for n, item in enumerate(raw):
                path = origins[n] if n < len(origins) else f"providers[{n}]"
                problems.extend(_problems_beyond_type_errors(item, path))
    if problems:
        unique = sorted(dict.fromkeys(problems), key=_problem_order)
        count = len(unique)
        noun = "problem" if count == 1 else "problems"
        raise ConnectorConfigError(f"{source}: {count} {noun}: " + "; ".join(unique), tuple(unique))
    assert config is not None
    return config


def _problem_order(problem: str) -> tuple[int, str]:
    match = re.match(r"^providers\[(\d+)\]", problem)
    return (int(match.group(1)) if match else -1, "")


def config_to_json(config: ConnectorConfig) -> str:
    """The validated config as JSON (secret references stay references)."""
    return json.dumps(config.model_dump(mode="json", exclude_none=True), sort_keys=True)
