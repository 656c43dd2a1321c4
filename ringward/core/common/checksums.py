"""``checksums.txt``: strict grammar, deterministic rendering.

Grammar (stricter than ``sha256sum -c``, which follows ``../``, reads devices and exits 0 on
malformed lines): UTF-8 without BOM, LF line endings, a final newline, one entry per line,
``<64 lowercase hex><two spaces><safe relative name>``, no blank lines, no ``*`` binary marker,
no duplicate names (also after case-folding, which would collide on macOS/Windows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ringward.core.common.paths import check_relative_name
from ringward.core.errors import MalformedManifestError, UnsafePathError, WeakDigestError

CHECKSUMS_FILE = "checksums.txt"
MAX_CHECKSUMS_BYTES = 4 * 1024 * 1024
_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64})  (?P<name>[^\n]+)$")
_HEXISH = re.compile(r"^(?P<digest>[0-9A-Fa-f]+)(?P<sep>\s+\*?|\s*\*)(?P<name>.*)$")


@dataclass(frozen=True)
class ChecksumManifest:
    """Ordered mapping of relative name -> sha256 hex, as signed."""

    entries: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.entries)

    def names(self) -> list[str]:
        return [name for name, _ in self.entries]


def parse_checksums(data: bytes, *, source: str = CHECKSUMS_FILE) -> ChecksumManifest:
    if len(data) > MAX_CHECKSUMS_BYTES:
        raise MalformedManifestError(f"{source}: {len(data)} bytes, expected at most {MAX_CHECKSUMS_BYTES}")
    if data.startswith(b"\xef\xbb\xbf"):
        raise MalformedManifestError(f"{source}: starts with a UTF-8 BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedManifestError(f"{source}: not UTF-8 (byte {exc.start})") from exc
    if not text:
        raise MalformedManifestError(f"{source}: empty, expected at least one entry")
    if "\r" in text:
        raise MalformedManifestError(f"{source}: contains CR; expected LF line endings")
    if not text.endswith("\n"):
        raise MalformedManifestError(f"{source}: missing final newline")
    entries: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    folded: dict[str, int] = {}
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        match = _LINE.match(line)
        if match is None:
            raise _line_error(source, number, line)
        digest, name = match["digest"], match["name"]
        try:
            check_relative_name(name, source=f"{source} line {number}")
        except UnsafePathError as exc:
            raise MalformedManifestError(exc.message) from exc
        if name in seen:
            raise MalformedManifestError(
                f"{source} line {number}: duplicate entry {name!r} (first on line {seen[name]})"
            )
        key = name.casefold()
        if key in folded:
            raise MalformedManifestError(
                f"{source} line {number}: {name!r} collides with line {folded[key]} when case is ignored"
            )
        seen[name] = number
        folded[key] = number
        entries.append((name, digest))
    return ChecksumManifest(tuple(entries))


def _line_error(source: str, number: int, line: str) -> MalformedManifestError:
    where = f"{source} line {number}"
    if not line:
        return MalformedManifestError(f"{where}: blank line")
    loose = _HEXISH.match(line)
    if loose:
        digest = loose["digest"]
        if len(digest) != 64:
            kind = {32: "MD5", 40: "SHA-1", 56: "SHA-224", 96: "SHA-384", 128: "SHA-512"}.get(len(digest))
            if kind:
                return WeakDigestError(f"{where}: {len(digest)}-hex {kind} digest, expected 64-hex SHA-256")
            return MalformedManifestError(f"{where}: digest has {len(digest)} hex characters, expected 64")
        if digest != digest.lower():
            return MalformedManifestError(f"{where}: digest must be lowercase hex")
        if "*" in loose["sep"]:
            return MalformedManifestError(f"{where}: '*' binary marker not allowed")
        return MalformedManifestError(f"{where}: expected exactly two spaces between digest and name")
    return MalformedManifestError(f"{where}: expected '<64 lowercase hex>  <name>'")


def render_checksums(digests: Mapping[str, str]) -> bytes:
    """Deterministic ``checksums.txt`` for ``name -> sha256`` (sorted by name)."""
    lines = []
    for name in sorted(digests):
        check_relative_name(name, source=CHECKSUMS_FILE)
        lines.append(f"{digests[name]}  {name}\n")
    return "".join(lines).encode("utf-8")
