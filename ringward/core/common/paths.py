"""Safe relative names: the one rule set for checksums.txt entries, zip members and subjects."""

from __future__ import annotations

import unicodedata

from ringward.core.errors import UnsafePathError

MAX_NAME_LENGTH = 1024
#: characters that make a name display differently from what it is (e.g. U+202E RIGHT-TO-LEFT OVERRIDE)
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_COMPONENT_LENGTH = 255


def check_relative_name(name: str, *, source: str) -> str:
    """Return ``name`` if it is a safe relative POSIX path, else raise ``UnsafePathError``.

    Refused: empty, absolute, drive letters, backslashes, NUL/control characters, ``.``/``..``
    or empty components, leading/trailing whitespace, non-NFC text, over-long names.
    """
    problem = _problem(name)
    if problem:
        raise UnsafePathError(f"{source}: unsafe path {name!r}: {problem}")
    return name


def _problem(name: str) -> str | None:
    if not name:
        return "empty name"
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if name.startswith("/"):
        return "absolute path"
    if "\\" in name:
        return "contains a backslash"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "drive-letter path"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name):
        return "contains a control character"
    if any(ch in _BIDI_CONTROLS for ch in name):
        return "contains a bidirectional-text control character"
    if name != name.strip():
        return "leading or trailing whitespace"
    if unicodedata.normalize("NFC", name) != name:
        return "not NFC-normalised"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"component {part!r} not allowed"
        if len(part) > MAX_COMPONENT_LENGTH:
            return f"component longer than {MAX_COMPONENT_LENGTH} characters"
        if part != part.strip():
            return "component with leading or trailing whitespace"
    return None


def is_safe_relative_name(name: str) -> bool:
    return _problem(name) is None
