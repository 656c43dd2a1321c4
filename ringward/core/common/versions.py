"""Release versions: one canonical form and one total order.

Ringward uses SemVer 2.0.0 precedence (via the ``semver`` library): ``1.2.10 > 1.2.9``,
a pre-release sorts below its release (``1.3.0-rc.1 < 1.3.0``), dot-separated numeric
pre-release identifiers compare numerically (``rc.2 < rc.10``). Build metadata does not
affect precedence, so ``1.3.0+a`` and ``1.3.0+b`` are the *same* version: publishing both with
different bytes is a conflict, never an upgrade.

Go projects tag releases ``v1.2.5``, so one leading lowercase ``v`` is accepted before a canonical
SemVer string; order comes from the SemVer after it, and ``v1.2.3`` and ``1.2.3`` are the *same*
version (re-publishing 1.2.3 as v1.2.3 with other bytes is a conflict). The exact string is kept
(``text``) for file names and documents. Everything else must be canonical: no leading zeros, all
three components (``1.3``, ``V1.3.0``, ``vv1.3.0`` and ``v01.3.0`` are refused, unlike PEP 440
which would silently equate them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

import semver

from ringward.core.errors import VersionConflictError


@total_ordering
@dataclass(frozen=True)
class ReleaseVersion:
    text: str
    _parsed: semver.Version

    @classmethod
    def parse(cls, text: str, *, field: str = "version") -> ReleaseVersion:
        if not isinstance(text, str) or not text:
            raise VersionConflictError(f"{field}: expected a SemVer 2.0 version, found {text!r}")
        core = text[1:] if text.startswith("v") else text
        try:
            parsed = semver.Version.parse(core)
        except (ValueError, TypeError) as exc:
            raise VersionConflictError(
                f"{field}: {text!r} is not a canonical SemVer 2.0 version (expected [v]MAJOR.MINOR.PATCH"
                "[-pre][+build], no leading zeros)"
            ) from exc
        if str(parsed) != core:
            prefix = "v" if core != text else ""
            raise VersionConflictError(f"{field}: {text!r} is not canonical (expected {prefix}{parsed})")
        return cls(text, parsed)

    @property
    def canonical(self) -> str:
        """The SemVer string without a leading ``v`` (build metadata kept)."""
        return str(self._parsed)

    @property
    def has_v_prefix(self) -> bool:
        return self.text.startswith("v")

    @property
    def is_prerelease(self) -> bool:
        return self._parsed.prerelease is not None

    def _key(self) -> semver.Version:
        return self._parsed.replace(build=None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReleaseVersion):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(str(self._key()))

    def __lt__(self, other: ReleaseVersion) -> bool:
        return self._key() < other._key()

    def __str__(self) -> str:
        return self.text


def same_version(a: str, b: str) -> bool:
    """``a`` and ``b`` are the same release version (``v1.2.3`` == ``1.2.3``; build metadata does
    not order); False when either is not a version."""
    left, right = version_or_none(a), version_or_none(b)
    return left is not None and right is not None and left == right


def version_or_none(text: str | None) -> ReleaseVersion | None:
    """``text`` as a SemVer version (optional leading ``v``), or None when it is empty or not one."""
    if not text:
        return None
    try:
        return ReleaseVersion.parse(text)
    except VersionConflictError:
        return None


def is_canonical_version(text: str) -> bool:
    return version_or_none(text) is not None
