"""The reference's connector file (cavra-spec §7.2) -> Ringward's ``connectors.yaml``.

Secrets are never copied: ``*_env`` fields become ``env:NAME`` references to the same variables,
and a secret written in clear in the reference file (``token``, ``authorization``, ``api_key``, a
credential header, a Slack/Teams webhook URL, a URL with credentials in it) becomes a reference to
a new variable the user must set -- reported as such, the value itself never written anywhere.

Each provider entry is one record: it is migrated whole (and the result validated by Ringward's
own connector validator) or reported by provider key and field and left out.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict

from ringward.core.delivery.config import (
    CONNECTORS_SCHEMA,
    SECRET_URL_PROVIDERS,
    ProviderKind,
    check_url,
    validate_connector_config,
)
from ringward.core.errors import ConnectorConfigError
from ringward.core.migration.reference import RecordProblem, found_text

#: reference providers that trigger CI systems (cavra-spec §7.1); Ringward has no such connector
CI_TRIGGER_PROVIDERS = ("github", "gitlab", "azure_repos", "github_actions", "jenkins")
#: the reference's per-provider fields (§7.2) and what becomes of them
_ENV_FIELDS = {"url_env": "url", "token_env": "token", "authorization_env": "authorization", "api_key_env": "api_key"}
_SECRET_FIELDS = ("token", "authorization", "api_key")
_COPIED_FIELDS = ("title", "index", "service", "authorization_scheme", "api_key_header")
_IGNORED_FIELDS = ("event_type", "ref")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_AUTH_HEADER_WORDS = ("authorization", "token", "secret", "api-key", "apikey", "api_key", "password", "cookie")
_SECRET_QUERY_WORDS = ("sig", "token", "key", "secret", "password", "code", "signature", "auth", "sv", "sp")


class SecretReference(BaseModel):
    """A secret the migrated file references by name: the variable to set before delivering."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destination: str
    field: str
    reference: str
    #: True: the reference file held this secret in clear (it was NOT copied; set the variable)
    literal_in_source: bool
    note: str


class ConnectorMigration(BaseModel):
    """The migrated destinations (native dicts, validated), what to set, and what was left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: tuple[dict[str, Any], ...]
    references: tuple[SecretReference, ...]
    notes: tuple[str, ...]
    problems: tuple[RecordProblem, ...]
    entries: int

    def document(self) -> dict[str, Any] | None:
        """The native ``connectors.yaml`` document, or None when nothing was migrated."""
        if not self.destinations:
            return None
        return {"schema_version": CONNECTORS_SCHEMA, "providers": list(self.destinations)}


def _env_name(destination: str, field: str) -> str:
    return "RINGWARD_" + re.sub(r"[^A-Z0-9]", "_", f"{destination}_{field}".upper())


def _provider_map(document: Any, *, source: str) -> tuple[dict[str, Any], str]:
    """The provider map and its path prefix, in any of the three accepted roots (§7.2).

    Raises:
        ConnectorConfigError: the reference loader itself would refuse the file.
    """
    if not isinstance(document, dict):
        raise ConnectorConfigError(
            f"{source}: connector config must be an object (expected an object, found {type(document).__name__})"
        )
    if "connectors" in document:
        root, prefix = document["connectors"], "connectors"
    elif "providers" in document:
        root, prefix = document["providers"], "providers"
    else:
        root, prefix = document, ""
    if not isinstance(root, dict) or not root:
        raise ConnectorConfigError(
            f"{source}: connector config must contain connector objects "
            f"(expected a non-empty map of provider -> object under {prefix or 'the root'}, found {found_text(root)})"
        )
    return root, prefix


def _credential_in_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None:
        return True
    for key, _value in parse_qsl(parts.query, keep_blank_values=True):
        if any(word in re.split(r"[-_.]", key.lower()) for word in _SECRET_QUERY_WORDS):
            return True
    return False


def migrate_connectors(document: Any, *, source: str) -> ConnectorMigration:
    """Map a parsed reference connector file to Ringward destinations.

    Raises:
        ConnectorConfigError: not a connector file at all (the reference's own loader errors).
    """
    providers, prefix = _provider_map(document, source=source)
    destinations: list[dict[str, Any]] = []
    references: list[SecretReference] = []
    notes: list[str] = []
    problems: list[RecordProblem] = []
    known = {kind.value for kind in ProviderKind} - {ProviderKind.PAGERDUTY.value, ProviderKind.PRIVATE_QUEUE.value}
    used_names: set[str] = set()
    for index, (key, raw) in enumerate(providers.items()):
        record = f"{prefix}.{key}" if prefix else str(key)

        def problem(field: str | None, expected: str, found: str, *, _record: str = record, _i: int = index) -> None:
            problems.append(
                RecordProblem(source=source, record=_record, index=_i, field=field, expected=expected, found=found)
            )

        if not isinstance(raw, dict):
            problem(None, "an object (connector <p> config must be an object)", type(raw).__name__)
            continue
        kind = str(key).strip().lower()
        if kind in CI_TRIGGER_PROVIDERS:
            problem(
                None,
                "a delivery destination Ringward has (" + ", ".join(sorted(known)) + ")",
                f"{kind!r}, a CI trigger (trigger CI from a webhook destination or a Prefect automation instead)",
            )
            continue
        if kind not in known:
            problem(None, "a reference provider (" + ", ".join(sorted(known)) + ")", found_text(key))
            continue
        name = re.sub(r"[^a-z0-9_.-]", "-", kind)[:64]
        if name in used_names:
            problem(None, "one entry per provider", f"a second {kind!r} entry")
            continue
        entry: dict[str, Any] = {"name": name, "provider": kind}
        pending: list[SecretReference] = []
        entry_problems_before = len(problems)

        def secret(field: str, note: str, *, _name: str = name, _pending: list[SecretReference] = pending) -> str:
            reference = f"env:{_env_name(_name, field)}"
            _pending.append(
                SecretReference(destination=_name, field=field, reference=reference, literal_in_source=True, note=note)
            )
            return reference

        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            problem("enabled", "true or false", found_text(enabled))
        entry["enabled"] = enabled
        method = raw.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in ("POST", "PUT"):
            problem("method", "POST or PUT", found_text(method))
        else:
            entry["method"] = method.upper()
        for env_field, target in _ENV_FIELDS.items():
            if env_field not in raw:
                continue
            value = raw[env_field]
            if not isinstance(value, str) or not _ENV_NAME.match(value):
                problem(env_field, "the name of an environment variable", found_text(value))
                continue
            entry[target] = f"env:{value}"
            pending.append(
                SecretReference(
                    destination=name,
                    field=target,
                    reference=f"env:{value}",
                    literal_in_source=False,
                    note=f"same variable as the reference's {env_field}",
                )
            )
        url = raw.get("url")
        if "url" not in entry and url is not None:
            if not isinstance(url, str) or not url:
                problem("url", "a URL", found_text(url))
            elif kind in {k.value for k in SECRET_URL_PROVIDERS}:
                entry["url"] = secret("url", f"the {kind} webhook URL in the reference file is a credential")
            elif _credential_in_url(url):
                entry["url"] = secret("url", "the URL in the reference file carries credentials")
            else:
                try:
                    entry["url"] = check_url(url)
                except ValueError as exc:
                    problem("url", f"an https URL ({exc})", found_text(url))
        for field in _SECRET_FIELDS:
            value = raw.get(field)
            if value is None or field in entry:
                continue
            if not isinstance(value, str) or not value:
                problem(field, "a secret string", type(value).__name__)
                continue
            entry[field] = secret(field, f"{field} was written in clear in the reference file")
        headers = raw.get("headers")
        if headers is not None:
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                problem("headers", "an object of header name -> string", found_text(type(headers).__name__))
            else:
                out: dict[str, str] = {}
                for header, value in headers.items():
                    lowered = str(header).lower()
                    if any(word in lowered for word in _AUTH_HEADER_WORDS):
                        out[lowered] = secret(
                            f"header_{lowered}", f"header {lowered!r} in the reference file is a credential"
                        )
                    else:
                        out[lowered] = value
                entry["headers"] = out
        for field in _COPIED_FIELDS:
            if field in raw:
                entry[field] = raw[field]
        for field in _IGNORED_FIELDS:
            if field in raw:
                notes.append(f"{source} {record}.{field}: not migrated (a CI-trigger field; {kind} ignores it)")
        for field in sorted(set(raw) - set(_ENV_FIELDS) - set(_SECRET_FIELDS) - set(_COPIED_FIELDS)
                            - set(_IGNORED_FIELDS) - {"enabled", "method", "url", "headers"}):
            notes.append(f"{source} {record}.{field}: not migrated (the reference's loader does not read it)")
        if kind in ("jamf", "intune"):
            entry["mode"] = "relay"  # the reference posts its publication envelope to a receiver
        if kind == "webhook":
            # Ringward signs every webhook (Standard Webhooks); the receiver needs the shared secret
            entry["signing_secret"] = f"env:{_env_name(name, 'signing_secret')}"
            pending.append(
                SecretReference(
                    destination=name,
                    field="signing_secret",
                    reference=entry["signing_secret"],
                    literal_in_source=False,
                    note="new in Ringward: webhook bodies are signed; set it and give the receiver the same secret",
                )
            )
        if len(problems) > entry_problems_before:
            continue
        try:
            validate_connector_config({"providers": [entry]}, source=source)
        except ConnectorConfigError as exc:
            for line in exc.problems or (exc.message,):
                path, _, reason = line.partition(": ")
                field = path.split(".", 1)[1] if path.startswith("providers[0].") else path
                value = entry.get(field.split(".", 1)[0])
                problem(
                    field,
                    f"a value Ringward needs ({reason or line})",
                    "nothing in the reference entry" if value is None else found_text(value),
                )
            continue
        used_names.add(name)
        destinations.append(entry)
        references.extend(pending)
    return ConnectorMigration(
        destinations=tuple(destinations),
        references=tuple(references),
        notes=tuple(notes),
        problems=tuple(problems),
        entries=len(providers),
    )


def render_connectors_yaml(migration: ConnectorMigration, *, source: str, source_sha256: str) -> bytes | None:
    """The migrated ``connectors.yaml`` text (a header naming the variables to set), or None."""
    document = migration.document()
    if document is None:
        return None
    # the output must load with Ringward's own validator before anyone relies on it
    validate_connector_config(document, source="migrated connectors.yaml")
    header = [
        "# Migrated by `ringward migrate reference` from the reference connector file",
        f"# {source} (sha256 {source_sha256}).",
        "# Secrets are references, never values. Set these variables before delivering:",
    ]
    for ref in migration.references:
        flag = "  (was in clear in the reference file: NOT copied)" if ref.literal_in_source else ""
        header.append(f"#   {ref.reference.removeprefix('env:')}: {ref.destination}.{ref.field}{flag}")
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return ("\n".join(header) + "\n" + body).encode("utf-8")
