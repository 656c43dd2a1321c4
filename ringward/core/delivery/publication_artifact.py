"""An installer file named by an endpoint-management publication event (Jamf package, Intune content).

The event names each file by its path under the destination's ``artifact_root`` plus the size and
SHA-256 its bytes must have; the native publishers read the file confined to that root and compare
before anything is uploaded (``connectors.artifacts``). This module is the lexical half: a path of
plain relative segments, and a well-formed digest.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.delivery.event import ConnectorEvent, format_validation_error
from ringward.core.errors import ConnectorEventError

_Model = TypeVar("_Model", bound=BaseModel)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: one path segment of an artifact: no separators, no leading dot (no ``..``, no hidden files)
_SEGMENT = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")


def check_artifact_path(value: str) -> str:
    """A relative POSIX path of plain segments (no absolute path, ``..``, ``.``, backslash, NUL).

    The lexical half of confinement; the reader still opens every segment with ``O_NOFOLLOW`` so a
    symlink cannot lead out of the artifact root.

    Raises:
        ValueError: with the offending path.
    """
    if not value or value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError(f"artifact path must be relative inside the artifact root, found {value!r}")
    if any(not _SEGMENT.match(segment) for segment in value.split("/")):
        raise ValueError(
            f"artifact path must be plain segments [A-Za-z0-9._+-] (no '..', no hidden names), found {value!r}"
        )
    return value


def check_sha256(value: str) -> str:
    """A SHA-256 hex digest, lower-cased."""
    lowered = value.lower()
    if not _SHA256.match(lowered):
        raise ValueError(f"expected 64 hex characters, found {value!r}")
    return lowered


class ArtifactFile(BaseModel):
    """One file: where it is under ``artifact_root`` and what its bytes must be."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: path relative to the destination's artifact root
    artifact: str
    sha256: str
    size: int = Field(alias="bytes", ge=0)

    @field_validator("artifact")
    @classmethod
    def _check_artifact(cls, value: str) -> str:
        return check_artifact_path(value)

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, value: str) -> str:
        return check_sha256(value)


def provider_payload(event: ConnectorEvent, key: str) -> dict[str, Any]:
    """The event's ``provider_payloads[key]`` object, or ConnectorEventError naming it."""
    raw = event.provider_payloads.get(key)
    if not isinstance(raw, dict):
        raise ConnectorEventError(f"event {event.event_id}: provider_payloads.{key} is missing")
    return raw


def validated(model: type[_Model], data: Any, *, event_id: str, path: str = "") -> _Model:
    """``data`` as ``model``, or one ConnectorEventError listing every problem with its path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc, prefix=path) if path else format_validation_error(exc)
        raise ConnectorEventError(f"event {event_id}: " + "; ".join(problems)) from exc


def event_artifacts(event: ConnectorEvent) -> list[dict[str, Any]]:
    """The event's ``attributes.artifacts`` ([{artifact, sha256, bytes}], the reference publication
    event's list of export files); empty when absent."""
    raw = event.attributes.get("artifacts")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConnectorEventError(
            f"event {event.event_id}: attributes.artifacts: expected a list of objects, found {type(raw).__name__}"
        )
    return raw
