"""Package identities (``packageurl-python``) and affected version ranges (``univers``).

Nothing here parses a purl or a version range by hand: a purl is a :class:`PackageURL`, a range is
a univers ``VersionRange`` (``vers:<scheme>/<constraints>``). A range may be given in full
(``vers:golang/>=v1.0.0|<v1.2.3``) or as its constraints alone (``>=1.0.0|<1.2.3``), in which case
the scheme is the product purl's type. The conversions to OSV events and to GitHub's
``vulnerable_version_range`` read univers' parsed constraints.

Supported product types (those with a univers scheme, an OSV ecosystem and a GHSA ecosystem):
golang, npm, pypi, cargo, maven, nuget, gem, composer, hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from packageurl import PackageURL
from univers.version_constraint import validate_comparators
from univers.version_range import RANGE_CLASS_BY_SCHEMES, VersionRange
from univers.versions import InvalidVersion, Version

from ringward.core.errors import InputError

MAX_PURL_CHARS: Final = 1024
MAX_RANGE_CHARS: Final = 2048


@dataclass(frozen=True)
class Ecosystem:
    purl_type: str
    vers_scheme: str
    osv: str
    ghsa: str
    #: OSV range type: SEMVER where the ecosystem's versions are SemVer, else ECOSYSTEM
    osv_range: str


ECOSYSTEMS: Final = {
    e.purl_type: e
    for e in (
        Ecosystem("golang", "golang", "Go", "go", "SEMVER"),
        Ecosystem("npm", "npm", "npm", "npm", "SEMVER"),
        Ecosystem("cargo", "cargo", "crates.io", "rust", "SEMVER"),
        Ecosystem("hex", "hex", "Hex", "erlang", "SEMVER"),
        Ecosystem("pypi", "pypi", "PyPI", "pip", "ECOSYSTEM"),
        Ecosystem("maven", "maven", "Maven", "maven", "ECOSYSTEM"),
        Ecosystem("nuget", "nuget", "NuGet", "nuget", "ECOSYSTEM"),
        Ecosystem("gem", "gem", "RubyGems", "rubygems", "ECOSYSTEM"),
        Ecosystem("composer", "composer", "Packagist", "composer", "ECOSYSTEM"),
    )
}


def parse_purl(text: str, *, option: str) -> PackageURL:
    """A package URL, parsed by ``packageurl-python``.

    Raises:
        InputError: not a purl (the library's reason is quoted).
    """
    if not isinstance(text, str) or not text or len(text) > MAX_PURL_CHARS:
        raise InputError(f"{option}: expected a package URL (pkg:type/namespace/name) of 1..{MAX_PURL_CHARS} chars")
    try:
        return PackageURL.from_string(text)
    except ValueError as exc:
        raise InputError(f"{option}: not a package URL: {exc}") from exc


def product_purl(text: str, *, option: str = "--purl") -> PackageURL:
    """The affected product's identity: a supported type, no version (versions are in the range)."""
    purl = parse_purl(text, option=option)
    if purl.type not in ECOSYSTEMS:
        raise InputError(f"{option}: purl type {purl.type!r} is not supported for advisories; expected one of "
                         f"{', '.join(sorted(ECOSYSTEMS))}")
    if purl.version is not None:
        raise InputError(f"{option}: the product purl names no version (found @{purl.version}); "
                         "affected versions go in --affected")
    return purl


def ecosystem_of(purl: PackageURL) -> Ecosystem:
    try:
        return ECOSYSTEMS[purl.type]
    except KeyError as exc:
        raise InputError(f"purl type {purl.type!r} is not supported; expected one of {', '.join(sorted(ECOSYSTEMS))}") \
            from exc


def osv_package_name(purl: PackageURL) -> str:
    """The package name as OSV and GitHub spell it for the purl's ecosystem."""
    if purl.type == "maven" and purl.namespace:
        return f"{purl.namespace}:{purl.name}"
    if purl.type == "npm" and purl.namespace:
        return f"{purl.namespace}/{purl.name}"
    return f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name


def versionless(purl: PackageURL) -> str:
    """The purl without version, qualifiers and subpath (the identity two components share)."""
    return PackageURL(type=purl.type, namespace=purl.namespace, name=purl.name).to_string()


def parse_range(text: str, purl: PackageURL, *, option: str = "--affected") -> VersionRange:
    """An affected range for ``purl``: ``vers:<scheme>/...`` or bare constraints in the purl's scheme.

    Raises:
        InputError: unknown scheme, a scheme other than the purl's, an invalid version, or
            constraints that are not a valid ``vers`` sequence (e.g. two lower bounds in a row).
    """
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_RANGE_CHARS:
        raise InputError(f"{option}: expected a version range of 1..{MAX_RANGE_CHARS} characters")
    scheme = ecosystem_of(purl).vers_scheme
    spec = text.strip() if text.strip().startswith("vers:") else f"vers:{scheme}/{text.strip()}"
    given = spec[len("vers:"):].split("/", 1)[0]
    if given not in RANGE_CLASS_BY_SCHEMES:
        raise InputError(f"{option}: unknown vers scheme {given!r}")
    if given != scheme:
        raise InputError(f"{option}: range scheme {given!r} does not match the product purl type "
                         f"{purl.type!r} (expected vers:{scheme}/...)")
    try:
        parsed: VersionRange = VersionRange.from_string(spec)  # type: ignore[no-untyped-call]
        validate_comparators(sorted(parsed.constraints))  # type: ignore[no-untyped-call]
    except (InvalidVersion, ValueError, TypeError) as exc:
        raise InputError(f"{option}: invalid version range {text!r}: {exc}") from exc
    if not parsed.constraints:
        raise InputError(f"{option}: the range has no constraint")
    return parsed


def parse_version(text: str, affected: VersionRange, *, option: str) -> Version:
    """A version in the range's scheme (``univers`` decides what is valid)."""
    if not isinstance(text, str) or not text.strip() or len(text) > 128:
        raise InputError(f"{option}: expected a version of 1..128 characters")
    version_class: Any = affected.version_class
    try:
        version: Version = version_class(text.strip())
    except (InvalidVersion, ValueError, TypeError) as exc:
        raise InputError(f"{option}: {text!r} is not a valid {affected.scheme} version: {exc}") from exc
    return version


def in_range(version: Version, affected: VersionRange) -> bool:
    return bool(version in affected)


def _plain(version: Any) -> str:
    """OSV SEMVER and GitHub ranges spell versions without a leading ``v``."""
    text = str(version)
    return text[1:] if text[:1] == "v" and text[1:2].isdigit() else text


def osv_events(affected: VersionRange) -> tuple[list[dict[str, str]], list[str]]:
    """(OSV ``events``, explicit ``versions``) for ``affected``.

    Raises:
        InputError: a constraint OSV cannot express exactly (``>``, ``!=``).
    """
    events: list[dict[str, str]] = []
    versions: list[str] = []
    open_interval = False
    for constraint in sorted(affected.constraints):
        comparator, version = constraint.comparator, constraint.version
        if comparator == "*":
            return [{"introduced": "0"}], []
        if comparator == "=":
            versions.append(_plain(version))
        elif comparator == ">=":
            events.append({"introduced": _plain(version)})
            open_interval = True
        elif comparator in ("<", "<="):
            if not open_interval:
                events.append({"introduced": "0"})
            events.append({"fixed" if comparator == "<" else "last_affected": _plain(version)})
            open_interval = False
        else:
            raise InputError(f"--affected: constraint {comparator}{version} cannot be expressed in OSV; "
                             "use >=, <, <= or = constraints")
    if any("fixed" in e for e in events) and any("last_affected" in e for e in events):
        raise InputError("--affected: OSV ranges cannot mix < (fixed) and <= (last_affected) bounds")
    return events, versions


def ghsa_ranges(affected: VersionRange) -> list[str]:
    """GitHub ``vulnerable_version_range`` strings, one per interval (``>= 1.0.0, < 1.2.3``)."""
    out: list[str] = []
    lower: str | None = None
    for constraint in sorted(affected.constraints):
        comparator, version = constraint.comparator, _plain(constraint.version)
        if comparator == "*":
            return [">= 0"]
        if comparator == "=":
            out.append(f"= {version}")
        elif comparator in (">=", ">"):
            lower = f"{comparator} {version}"
        elif comparator in ("<", "<="):
            out.append(f"{lower}, {comparator} {version}" if lower else f"{comparator} {version}")
            lower = None
        else:
            out.append(f"{comparator} {version}")
    if lower is not None:
        out.append(lower)
    return out
