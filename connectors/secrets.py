"""Secret resolution and the resolved (ready to send) destination.

A :class:`SecretResolver` turns ``env:NAME`` / ``prefect-secret:NAME`` references into values.
This package resolves ``env:`` itself; ``prefect-secret:`` needs a resolver handed in from the
Prefect layer (``tasks.delivery.prefect_secret_resolver``), because nothing below ``tasks/``
imports Prefect. Every resolved value is registered with the run's
:class:`~ringward.core.redaction.SecretScrubber` before it is used, so no record can carry it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ringward.core.common.redaction import SecretScrubber, redact_url
from ringward.core.delivery.config import (
    SECRET_URL_PROVIDERS,
    ConnectorConfig,
    DestinationConfig,
    ProviderKind,
    SecretRef,
    check_url,
    default_url,
    is_secret_ref,
)
from ringward.core.delivery.policy import DeliveryPolicy
from ringward.core.errors import SecretReferenceError

#: scheme -> function(name) -> value; raising SecretReferenceError when unavailable
SecretLookup = Callable[[str], str]


def env_lookup(name: str) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        raise SecretReferenceError(f"environment variable {name} is not set (referenced as env:{name})")
    return value


def _no_prefect(name: str) -> str:
    raise SecretReferenceError(
        f"prefect-secret:{name} needs the Prefect secret resolver; run with --prefect or through the "
        "deliver-event flow, or use env:NAME"
    )


class SecretResolver:
    """Resolves secret references by scheme and remembers every value it handed out."""

    def __init__(
        self, lookups: Mapping[str, SecretLookup] | None = None, *, scrubber: SecretScrubber | None = None
    ):
        self._lookups: dict[str, SecretLookup] = {"env": env_lookup, "prefect-secret": _no_prefect}
        if lookups:
            self._lookups.update(lookups)
        self.scrubber = scrubber if scrubber is not None else SecretScrubber()
        self._cache: dict[SecretRef, str] = {}

    def resolve(self, ref: SecretRef) -> str:
        """The secret's value (registered with the scrubber).

        Raises:
            SecretReferenceError: unknown scheme, unset variable, missing block.
        """
        if ref in self._cache:
            return self._cache[ref]
        lookup = self._lookups.get(ref.scheme)
        if lookup is None:
            raise SecretReferenceError(f"unsupported secret reference scheme in {ref}")
        value = lookup(ref.name)
        if not isinstance(value, str) or not value:
            raise SecretReferenceError(f"{ref} resolved to an empty value")
        self._cache[ref] = value
        self.scrubber.add(value)
        return value


@dataclass(frozen=True)
class ResolvedDestination:
    """A destination with its secrets resolved: everything a provider needs to build requests."""

    config: DestinationConfig
    policy: DeliveryPolicy
    #: the real endpoint URL (may itself be a secret)
    url: str
    #: URL safe for records
    redacted_url: str
    #: field name (token, password, ...) -> value
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: extra headers with secret references resolved
    headers: Mapping[str, str] = field(default_factory=dict)
    scrubber: SecretScrubber = field(default_factory=SecretScrubber)
    #: the URL path is a credential (Slack/Teams, or the URL came from a secret reference)
    url_is_secret: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> ProviderKind:
        return self.config.provider

    def secret(self, name: str) -> str | None:
        return self.secrets.get(name)


_SECRET_FIELDS = (
    "token",
    "authorization",
    "api_key",
    "password",
    "api_token",
    "signing_secret",
    "signing_secret_previous",
    "signing_key",
    "routing_key",
    "client_secret",
)


def resolve_destination(
    dest: DestinationConfig, *, defaults: DeliveryPolicy, resolver: SecretResolver
) -> ResolvedDestination:
    """Resolve one destination's URL, credentials and headers.

    Raises:
        SecretReferenceError: a reference cannot be resolved.
        ConnectorConfigError: a URL from a secret is not acceptable (https, loopback http).
    """
    from ringward.core.errors import ConfigError, ConnectorConfigError

    scrubber = resolver.scrubber
    whole_path_secret = dest.provider in SECRET_URL_PROVIDERS
    if isinstance(dest.url, SecretRef):
        url = resolver.resolve(dest.url)
        scrubber.add_url(url)
        whole_path_secret = True
        try:
            # the URL is a secret: credential-looking query parameters are expected (Teams sig=)
            check_url(url, allow_query_secrets=True)
        except ValueError as exc:
            raise ConnectorConfigError(f"{dest.name}.url ({dest.url}): {exc}") from exc
    elif dest.url is not None:
        url = dest.url
    elif dest.directory is not None:
        url = "file://" + os.path.abspath(dest.directory)
    else:
        url = default_url(dest.provider) or ""
    secrets: dict[str, str] = {}
    for name in _SECRET_FIELDS:
        ref = getattr(dest, name)
        if ref is not None:
            secrets[name] = resolver.resolve(ref)
    if "signing_key" in secrets:
        from ringward.core.delivery.webhook_signing import load_signing_key

        load_signing_key(secrets["signing_key"], source=f"{dest.name}.signing_key ({dest.signing_key})")
    for name in ("signing_secret", "signing_secret_previous"):
        if name in secrets:
            from ringward.core.delivery.webhook_signing import secret_bytes

            try:
                secret_bytes(secrets[name])
            except ConfigError as exc:
                raise ConfigError(f"{dest.name}.{name} ({getattr(dest, name)}): {exc}") from exc
    if dest.username and "password" in secrets:
        basic = base64.b64encode(f"{dest.username}:{secrets['password']}".encode()).decode()
        scrubber.add(basic)
    if dest.email and "api_token" in secrets:
        basic = base64.b64encode(f"{dest.email}:{secrets['api_token']}".encode()).decode()
        scrubber.add(basic)
    headers: dict[str, str] = {}
    for name, value in dest.headers.items():
        headers[name] = resolver.resolve(SecretRef.parse(value)) if is_secret_ref(value) else value
    redacted = redact_url(url, whole_path_secret=whole_path_secret) if not url.startswith("file://") else url
    return ResolvedDestination(
        config=dest,
        policy=dest.policy(defaults),
        url=url,
        redacted_url=scrubber.scrub(redacted),
        secrets=secrets,
        headers=headers,
        scrubber=scrubber,
        url_is_secret=whole_path_secret,
    )


def resolve_destinations(
    config: ConnectorConfig, selected: tuple[DestinationConfig, ...], *, resolver: SecretResolver
) -> tuple[list[ResolvedDestination], dict[str, str]]:
    """Resolve each selected destination; failures are returned per name, not raised.

    Returns:
        (resolved destinations, destination name -> one-line error for those that failed)
    """
    from ringward.core.errors import ConfigError

    resolved: list[ResolvedDestination] = []
    errors: dict[str, str] = {}
    defaults = config.default_policy()
    for dest in selected:
        try:
            resolved.append(resolve_destination(dest, defaults=defaults, resolver=resolver))
        except ConfigError as exc:
            errors[dest.name] = resolver.scrubber.scrub(str(exc))
    return resolved, errors
