"""Release versions: one canonical form and one total order.

Ringward uses SemVer 2.0.0 precedence (via the ``semver`` library): ``1.2.10 > 1.2.9``,
a pre-release sorts below its release (``1.3.0-rc.1 < 1.3.0``), dot-separated numeric
pre-release identifiers compare numerically (``rc.2 < rc.10``). Build metadata does not
affect precedence, so ``1.3.0+a`` and ``1.3.0+b`` are the *same* version: publishing both with
different bytes is a conflict, never an upgrade. Only canonical strings are accepted: no ``v``
prefix, no leading zeros, all three components (``1.3`` and ``v1.3.0`` are refused, unlike
PEP 440 which would silently equate them).
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
        try:
            parsed = semver.Version.parse(text)
        except (ValueError, TypeError) as exc:
            raise VersionConflictError(
                f"{field}: {text!r} is not a canonical SemVer 2.0 version (expected MAJOR.MINOR.PATCH"
                "[-pre][+build], no 'v' prefix, no leading zeros)"
            ) from exc
        if str(parsed) != text:
            raise VersionConflictError(f"{field}: {text!r} is not canonical (expected {parsed})")
        return cls(text, parsed)

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


def version_or_none(text: str | None) -> ReleaseVersion | None:
    """``text`` as a canonical SemVer version, or None when it is empty or not one."""
    if not text:
        return None
    try:
        return ReleaseVersion.parse(text)
    except VersionConflictError:
        return None


def is_canonical_version(text: str) -> bool:
    return version_or_none(text) is not None
