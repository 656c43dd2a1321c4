"""Strict JSON reading and deterministic JSON writing.

Signed documents are verified over their exact bytes and parsed only afterwards; the parser
rejects what lets two readers see different values: duplicate keys, NaN/Infinity, a BOM,
trailing data and non-UTF-8 bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ringward.core.errors import MalformedDocumentError

#: default cap on one JSON document read from an untrusted source
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` ``object_pairs_hook``: a key given twice is an error (ValueError), not the last one."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value) or math.isnan(value):
        raise ValueError(f"number {text} overflows a float")
    return value


def loads_strict(data: bytes, *, source: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse ``data`` as one strict JSON value; ``source`` names the file in errors."""
    if len(data) > max_bytes:
        raise MalformedDocumentError(
            f"{source}: document is {len(data)} bytes, expected at most {max_bytes}"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        raise MalformedDocumentError(f"{source}: starts with a UTF-8 BOM, expected plain UTF-8 JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDocumentError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        # json.loads already rejects trailing data ("Extra data")
        return json.loads(
            text, object_pairs_hook=reject_duplicate_keys, parse_constant=_reject_constant, parse_float=_parse_float
        )
    except (ValueError, RecursionError) as exc:
        raise MalformedDocumentError(f"{source}: invalid JSON: {exc}") from exc


def dumps_document(value: Any) -> bytes:
    """The on-disk form of every JSON document Ringward writes (reference layout:
    indent 2, sorted keys, trailing newline)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def dumps_canonical(value: Any) -> bytes:
    """Compact sorted encoding used for hashing records (never for signed files)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
