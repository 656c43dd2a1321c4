"""Small configuration files the operators write (``webhooks.yaml``, ``sla-webhooks.yaml``): parsed once
into their pydantic model with one-line errors, and secret references (``env:NAME``, ``file:PATH``)
resolved at load, so a bad reference fails at startup with the reference named, never the value."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ringward.core.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)

#: a file-backed secret is small; more than this is read no further
MAX_SECRET_FILE_BYTES = 8192


def parse_yaml_model(data: bytes, model: type[Model], *, source: str, max_bytes: int) -> Model:
    """``data`` (YAML or JSON) as ``model``.

    Raises:
        ConfigError: one line naming ``source`` and the first bad field.
    """
    if len(data) > max_bytes:
        raise ConfigError(f"{source}: larger than {max_bytes} bytes")
    try:
        document = yaml.safe_load(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(document).__name__}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


def resolve_secret_ref(ref: str, *, where: str, environ: Mapping[str, str]) -> str:
    """The value behind ``env:NAME`` or ``file:PATH`` (stripped).

    Raises:
        ConfigError: ``<where>: ...`` naming the reference (never a value) when it is unset, unreadable
            or empty.
    """
    scheme, _, name = ref.partition(":")
    if scheme == "env":
        value = environ.get(name, "")
        if not value.strip():
            raise ConfigError(f"{where}: environment variable {name} (from {ref}) is not set")
        return value.strip()
    try:
        data = Path(name).expanduser().read_bytes()[:MAX_SECRET_FILE_BYTES]
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {ref} ({type(exc).__name__})") from None
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        raise ConfigError(f"{where}: {ref} is empty")
    return text
