"""Reading an observations file (``cavra.endpoint-observations.v1``) without loading it whole.

Two readers, one result:

- :func:`line_layout`: the layout Ringward writes (:func:`~ringward.core.inventory.observations.render_observations`:
  header first, one endpoint per line, ``endpoints`` last). The columnar engine streams such a file.
- :func:`stream_document`: any valid JSON layout (the reference writes ``endpoints`` between other
  keys, indented over many lines): an incremental parser that yields the header fields and one
  endpoint at a time, so memory stays bounded whatever the fleet size. Endpoints are validated
  against the schema here; errors name the record index and field.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import InputError, MalformedDocumentError, validation_problem
from ringward.core.inventory.observations import (
    ENDPOINT_INDENT,
    ENDPOINTS_CLOSE,
    ENDPOINTS_OPEN,
    Endpoint,
    ObservationsHeader,
)

#: largest header (everything but the endpoints) read while looking for the line layout
MAX_HEADER_BYTES = 1024 * 1024
#: largest observations file accepted (a million endpoints is ~350 MB)
MAX_OBSERVATIONS_BYTES = 8 * 1024 * 1024 * 1024
_CHUNK = 1 << 22
_TAIL = f"\n{ENDPOINTS_CLOSE}\n}}\n".encode()
_DECODER = json.JSONDecoder()


def _header(data: dict[str, Any], source: str) -> ObservationsHeader:
    if data.get("schema_version") != "cavra.endpoint-observations.v1":
        raise InputError(f"{source}: schema_version: expected 'cavra.endpoint-observations.v1', "
                         f"found {data.get('schema_version')!r} (observed endpoint inventory has an invalid "
                         "schema_version; ingest provider payloads with `ringward inventory ingest`)")
    try:
        return ObservationsHeader.model_validate({k: v for k, v in data.items() if k != "endpoints"})
    except ValidationError as exc:
        raise InputError(f"{source}: {validation_problem(exc)}") from exc


def open_checked(path: Path) -> int:
    """The file's size, after refusing what is not a readable regular file of sane size."""
    from ringward.operations.common.files import check_input_path

    check_input_path(path, option="OBSERVATIONS")
    size = path.stat().st_size
    if size > MAX_OBSERVATIONS_BYTES:
        raise InputError(f"OBSERVATIONS {path}: {size} bytes, expected at most {MAX_OBSERVATIONS_BYTES}")
    return size


@dataclass(frozen=True)
class LineLayout:
    """Where the endpoint lines are: bytes ``[start, end)`` (each line ``    {...},\\n``; the last without
    the comma), after ``header_lines`` lines."""

    header: ObservationsHeader
    header_lines: int
    start: int
    end: int

    @property
    def empty(self) -> bool:
        return self.end <= self.start


def line_layout(path: Path) -> LineLayout | None:
    """The file's line layout, or None if it is laid out otherwise (then use :func:`stream_document`)."""
    size = open_checked(path)
    with open(path, "rb") as handle:
        head = handle.read(min(size, MAX_HEADER_BYTES))
        marker = ("\n" + ENDPOINTS_OPEN + "\n").encode()
        position = head.find(marker)
        if position < 0:
            return None
        start = position + len(marker)
        handle.seek(max(0, size - len(_TAIL)))
        tail = handle.read()
        handle.seek(start)
        first = handle.read(len(ENDPOINT_INDENT) + 1)
    end = size - len(_TAIL) + 1  # keep the last endpoint line's newline
    if not tail.endswith(_TAIL) or end < start:
        return None
    if end > start and first != ENDPOINT_INDENT.encode() + b"{":
        return None
    try:
        data = loads_strict(head[: position + 1] + b'  "endpoints": []\n}\n', source=str(path))
    except MalformedDocumentError:
        return None
    if not isinstance(data, dict):
        return None
    return LineLayout(_header(data, str(path)), head[:start].count(b"\n"), start, end)


def iter_endpoint_lines(path: Path, layout: LineLayout) -> Iterator[bytes]:
    """Blocks of whole endpoint lines (bytes, ``    {...},\\n`` each) from the line layout."""
    with open(path, "rb") as handle:
        handle.seek(layout.start)
        remaining = layout.end - layout.start
        carry = b""
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield data[:cut]
        if carry:
            yield carry


# --- any layout --------------------------------------------------------------------------------------


class _Reader:
    """A text window over the file for an incremental JSON parse."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.eof = False

    def close(self) -> None:
        self._handle.close()

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self._handle.read(_CHUNK)
        try:
            text = self._decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            near = self._handle.tell() - len(chunk) + exc.start
            raise InputError(f"{self._path}: expected UTF-8 JSON, found {exc.reason} near byte {near}") from exc
        if not chunk:
            self.eof = True
            self.buf = self.buf[self.pos:] + text
            self.pos = 0
            return False
        self.buf = self.buf[self.pos:] + text
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, char: str, source: str) -> None:
        if self.skip_ws() != char:
            raise InputError(f"{source}: invalid JSON near byte offset: expected {char!r}")
        self.pos += 1

    def value(self, source: str) -> Any:
        self.skip_ws()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # a value cut by the window: read more and retry; at EOF it is really malformed
                if self.fill():
                    continue
                raise InputError(f"{source}: invalid JSON: {exc.msg}") from exc
            # a number may continue in the next chunk
            if end >= len(self.buf) and isinstance(value, int | float) and self.fill():
                continue
            self.pos = end
            return value


def stream_document(path: Path) -> Iterator[tuple[str, Any]]:
    """``("field", (key, value))`` for each top-level field but ``endpoints``, ``("endpoints", None)`` where
    the endpoint list opens and ``("endpoint", dict)`` for each endpoint, in file order. Refuses
    duplicate top-level keys and non-object endpoints."""
    source = str(path)
    open_checked(path)
    reader = _Reader(path)
    seen: set[str] = set()
    try:
        if reader.skip_ws() == "\ufeff":
            raise InputError(f"{source}: starts with a UTF-8 BOM, expected plain UTF-8 JSON")
        reader.expect("{", source)
        if reader.skip_ws() == "}":
            reader.pos += 1
            return
        while True:
            key = reader.value(source)
            if not isinstance(key, str):
                raise InputError(f"{source}: invalid JSON: expected a key")
            if key in seen:
                raise InputError(f"{source}: duplicate key {key!r}")
            seen.add(key)
            reader.expect(":", source)
            if key == "endpoints" and reader.skip_ws() == "[":
                reader.pos += 1
                yield "endpoints", None
                index = 0
                if reader.skip_ws() == "]":
                    reader.pos += 1
                else:
                    while True:
                        item = reader.value(source)
                        if not isinstance(item, dict):
                            raise InputError(f"{source}: endpoints[{index}]: expected an object, "
                                             f"found {type(item).__name__}")
                        yield "endpoint", item
                        index += 1
                        char = reader.skip_ws()
                        reader.pos += 1
                        if char == "]":
                            break
                        if char != ",":
                            raise InputError(f"{source}: endpoints[{index}]: invalid JSON: expected ',' or ']'")
            else:
                yield "field", (key, reader.value(source))
            char = reader.skip_ws()
            reader.pos += 1
            if char == "}":
                break
            if char != ",":
                raise InputError(f"{source}: invalid JSON: expected ',' or '}}' after {key!r}")
        if reader.skip_ws() != "":
            raise InputError(f"{source}: invalid JSON: trailing data after the document")
    finally:
        reader.close()


def read_header_any(path: Path) -> tuple[ObservationsHeader, int]:
    """The header of a file in any layout and its endpoint count (one pass; endpoints are discarded)."""
    fields: dict[str, Any] = {}
    count = 0
    has_endpoints = False
    for event, value in stream_document(path):
        if event == "field":
            fields[value[0]] = value[1]
        elif event == "endpoints":
            has_endpoints = True
        else:
            count += 1
    if not has_endpoints and "endpoints" not in fields:
        raise InputError(f"{path}: endpoints: field required")
    if "endpoints" in fields and not isinstance(fields["endpoints"], list):
        raise InputError(f"{path}: endpoints: expected a list")
    return _header(fields, str(path)), count


def validated_endpoints(path: Path) -> Iterator[dict[str, Any]]:
    """Every endpoint of a file in any layout, schema-checked, as it appears in the file."""
    index = 0
    for event, value in stream_document(path):
        if event != "endpoint":
            continue
        try:
            Endpoint.model_validate(value)
        except ValidationError as exc:
            raise InputError(f"{path}: endpoints[{index}]: {validation_problem(exc)}") from exc
        yield value
        index += 1


def file_size(path: Path) -> int:
    return os.stat(path).st_size
