"""Validation against the vendored, published JSON schemas (OSV, OpenVEX v0.2.0, CISA KEV).

Each validator returns every problem as ``"<json path>: <message>"`` (sorted, so output is
stable); an empty list means the document conforms. The schemas are read once from the package
(``schemas/``), never fetched.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.protocols import Validator


class SchemaName(StrEnum):
    OSV = "osv.schema.json"
    OPENVEX = "openvex-0.2.0.schema.json"
    KEV = "kev-catalog.schema.json"


@cache
def schema_document(name: SchemaName) -> dict[str, Any]:
    """The vendored schema as parsed JSON."""
    text = resources.files("ringward.core.advisories").joinpath("schemas", name.value).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(name: SchemaName) -> Validator:
    schema = schema_document(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def _path(error: jsonschema.ValidationError) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return "$" + parts


def schema_problems(name: SchemaName, document: Any, *, limit: int = 50) -> list[str]:
    """Every way ``document`` violates schema ``name`` (at most ``limit``), as ``path: message``."""
    problems = sorted(
        f"{_path(e)}: {e.message}" for e in _validator(name).iter_errors(document)
    )
    return problems[:limit]
