"""Which connector destination a pull reads, with which credentials.

A pull source is a destination of ``connectors.yaml``:

- ``jamf`` (native mode): ``url`` = the Jamf Pro server; an API client (``client_id`` +
  ``client_secret``; token from ``<server>/api/oauth/token`` or ``token_url``) or a user
  (``username`` + ``password``; token from ``/api/v1/auth/token``).
- ``intune`` (native mode): ``url`` = the Graph API base (``https://graph.microsoft.com/v1.0``);
  ``client_id`` + ``client_secret`` + ``tenant_id`` (token from login.microsoftonline.com, or
  ``token_url``).
- ``fleet``: a ``linux`` destination whose ``url`` is the Fleet server and ``token`` an API-only
  user's token (``Authorization: Bearer``).

Relay-mode Jamf/Intune destinations post to an in-house receiver and are never pull sources.
``--source NAME`` picks one when several match; none is :class:`NoPullSourceError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.auth import entra_token_url
from connectors.inventory_pull.auth import Auth, ClientCredentials, JamfBasicToken, StaticToken
from connectors.inventory_pull.fleet import MAX_PAGE_SIZE as FLEET_MAX
from connectors.inventory_pull.fleet import FleetPager
from connectors.inventory_pull.graph import MAX_PAGE_SIZE as GRAPH_MAX
from connectors.inventory_pull.graph import GraphPager
from connectors.inventory_pull.http import PullHttp
from connectors.inventory_pull.jamf import MAX_PAGE_SIZE as JAMF_MAX
from connectors.inventory_pull.jamf import JamfPager
from connectors.inventory_pull.pages import Pager
from connectors.secrets import ResolvedDestination, SecretLookup, SecretResolver, resolve_destination
from ringward.core.delivery.config import ConnectorConfig, DestinationConfig, ProviderKind, PublishMode
from ringward.core.errors import ConfigError

PULL_PROVIDERS = ("jamf", "intune", "fleet")
KINDS = {"jamf": ProviderKind.JAMF, "intune": ProviderKind.INTUNE, "fleet": ProviderKind.LINUX}
MAX_PAGE_SIZE = {"jamf": JAMF_MAX, "intune": GRAPH_MAX, "fleet": FLEET_MAX}
DEFAULT_PAGE_SIZE = {"jamf": 200, "intune": 100, "fleet": 100}
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class NoPullSourceError(ConfigError):
    """The connector configuration names no source for the provider."""

    code = "no-pull-source"


def check_provider(provider: str) -> str:
    if provider not in PULL_PROVIDERS:
        raise ConfigError(f"--provider: expected one of {', '.join(PULL_PROVIDERS)}, found {provider!r}")
    return provider


def select_pull_source(config: ConnectorConfig, provider: str, name: str | None = None, *,
                       config_label: str = "connectors.yaml") -> DestinationConfig:
    """The destination a ``provider`` pull reads (see the module docstring).

    Raises:
        NoPullSourceError: none is configured (or none is enabled).
        ConfigError: ``name`` is not a usable source, several match without ``name``, or its
            credentials are incomplete.
    """
    kind = KINDS[check_provider(provider)]
    usable = [d for d in config.providers if d.provider is kind and d.enabled and d.publish_mode is PublishMode.NATIVE]
    if name is not None:
        chosen = [d for d in usable if d.name == name]
        if not chosen:
            names = ", ".join(d.name for d in usable) or "none"
            raise ConfigError(f"--source {name}: not an enabled {kind.value} destination of {config_label} that a "
                              f"{provider} pull can read (usable: {names})")
        dest = chosen[0]
    elif not usable:
        raise NoPullSourceError(f"{config_label}: no {provider} pull source: add an enabled {kind.value} destination "
                                f"(native mode) with url and credentials")
    elif len(usable) > 1:
        raise ConfigError(f"{config_label}: {len(usable)} {kind.value} destinations "
                          f"({', '.join(d.name for d in usable)}); choose one with --source NAME")
    else:
        dest = usable[0]
    _check_credentials(provider, dest, config_label)
    return dest


def _check_credentials(provider: str, dest: DestinationConfig, label: str) -> None:
    where = f"{label}: {dest.name}"
    if dest.url is None:
        raise ConfigError(f"{where}.url: required for a {provider} pull (the server's base URL)")
    if provider == "jamf":
        if not ((dest.client_id and dest.client_secret) or (dest.username and dest.password)):
            raise ConfigError(f"{where}: a jamf pull needs client_id + client_secret (API client) or "
                              "username + password")
    elif provider == "intune":
        if not (dest.client_id and dest.client_secret and (dest.tenant_id or dest.token_url)):
            raise ConfigError(f"{where}: an intune pull needs client_id + client_secret + tenant_id (or token_url)")
    elif dest.token is None and dest.authorization is None:
        raise ConfigError(f"{where}.token: a fleet pull needs the API token (env:NAME or prefect-secret:NAME)")


@dataclass(frozen=True)
class PullSource:
    """A pull source with its secrets resolved (never recorded: only ``name``, ``provider`` and
    the scrubbed ``base_url`` leave this object)."""

    provider: str
    dest: ResolvedDestination
    base_url: str

    @property
    def name(self) -> str:
        return self.dest.name

    @property
    def label(self) -> str:
        return f"{self.provider} source {self.dest.name}"

    @property
    def shown_url(self) -> str:
        return self.dest.scrubber.scrub(self.base_url)


def _base_url(provider: str, url: str) -> str:
    base = url.rstrip("/")
    if provider == "intune" and urlsplit(base).path in ("", "/"):
        base += "/v1.0"  # the Graph host alone: the v1.0 API
    return base


def resolve_pull_source(config: ConnectorConfig, provider: str, name: str | None = None, *,
                        lookups: Mapping[str, SecretLookup] | None = None, resolver: SecretResolver | None = None,
                        config_label: str = "connectors.yaml") -> PullSource:
    """Select (:func:`select_pull_source`) and resolve the source's URL and secrets.

    Raises:
        ConfigError: as :func:`select_pull_source`; SecretReferenceError when a secret is unavailable.
    """
    dest = select_pull_source(config, provider, name, config_label=config_label)
    resolver = resolver or SecretResolver(lookups)
    resolved = resolve_destination(dest, defaults=config.default_policy(), resolver=resolver)
    return PullSource(provider, resolved, _base_url(provider, resolved.url))


def _auth(source: PullSource, http: PullHttp) -> Auth:
    dest = source.dest
    if source.provider == "jamf":
        if dest.config.client_id and "client_secret" in dest.secrets:
            parts = urlsplit(source.base_url)
            token_url = dest.config.token_url or f"{parts.scheme}://{parts.netloc}{parts.path}/api/oauth/token"
            return ClientCredentials(http, dest, token_url=token_url, scope=None,
                                     hint="check client_id and client_secret (Jamf Pro API client)")
        return JamfBasicToken(http, dest, base_url=source.base_url)
    if source.provider == "intune":
        return ClientCredentials(http, dest, token_url=entra_token_url(dest), scope=dest.config.scope or GRAPH_SCOPE,
                                 hint="check tenant_id, client_id and client_secret")
    return StaticToken(dest)


PAGERS: dict[str, Callable[..., Pager]] = {"jamf": JamfPager, "intune": GraphPager, "fleet": FleetPager}


def pager_class(provider: str) -> type[Pager]:
    return {"jamf": JamfPager, "intune": GraphPager, "fleet": FleetPager}[check_provider(provider)]


def open_pager(source: PullSource, http: PullHttp, *, page_size: int, since: str | None) -> Pager:
    """The provider's pager over ``http``, authenticated from the source's credentials."""
    return PAGERS[source.provider](http, _auth(source, http), base_url=source.base_url, page_size=page_size,
                                   since=since)
