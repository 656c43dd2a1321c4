"""The CISA Known Exploited Vulnerabilities catalog, and how Ringward matches it to a release.

Import rules: strict JSON; the vendored KEV JSON schema; ``count`` equals the number of entries
(the schema does not say so); no CVE twice; ``catalogVersion`` parses as ``YYYY.MM.DD`` (the
published form). Catalogs are ordered by (``dateReleased``, ``catalogVersion``): an older catalog
never replaces a newer one; the same position with other bytes is a conflict.

Matching rule (KEV names vendor/product and a CVE, never a purl -- so the rule is explicit):
a verified SBOM component (its purl and version) is *exposed* to a KEV CVE when

1. **product map**: an entry of the operator's product map names the KEV ``vendorProject`` and
   ``product`` (case-insensitive, exact otherwise) and a purl that matches the component (go-vex
   purl rules: type/namespace/name equal, a versioned map purl needs the same version), and the
   component's version is inside the entry's ``affected`` range when it gives one; or
2. **advisory**: a published Ringward advisory whose affected purl equals the component's
   (versionless) and whose range contains its version names the CVE (``cve`` or an alias); or
3. **VEX**: a stored OpenVEX statement for this release names the CVE (name or alias) and a
   product matching the component, with status ``affected`` or ``under_investigation``.

A published advisory matching a component is itself a finding (its id is the vulnerability),
in KEV or not. Whether a finding holds the release is decided by the latest VEX statement for
(component, vulnerability): ``not_affected`` or ``fixed`` resolve it, anything else (or none)
holds it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from packageurl import PackageURL
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.advisories.identity import in_range, parse_purl, parse_range, parse_version, versionless
from ringward.core.advisories.validation import SchemaName, schema_problems
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import InputError, MalformedDocumentError, validation_problem

MAX_KEV_BYTES: Final = 64 * 1024 * 1024
CATALOG_VERSION: Final = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")


class KevCatalogError(MalformedDocumentError):
    """The KEV catalog file is not a valid catalog; ``problems`` lists each."""

    code = "kev-invalid"

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class KevEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    cveID: str
    vendorProject: str
    product: str
    vulnerabilityName: str
    dateAdded: date
    shortDescription: str
    requiredAction: str
    dueDate: date
    knownRansomwareCampaignUse: str | None = None
    cwes: tuple[str, ...] = ()

    def stored(self) -> dict[str, Any]:
        return {"cveID": self.cveID, "vendorProject": self.vendorProject, "product": self.product,
                "vulnerabilityName": self.vulnerabilityName, "shortDescription": self.shortDescription,
                "dateAdded": self.dateAdded.isoformat(), "cwes": list(self.cwes),
                "dueDate": self.dueDate.isoformat(), "requiredAction": self.requiredAction,
                "knownRansomwareCampaignUse": self.knownRansomwareCampaignUse}


class KevCatalog(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    title: str | None = None
    catalogVersion: str
    dateReleased: datetime
    count: int = Field(ge=0)
    vulnerabilities: tuple[KevEntry, ...]

    @property
    def position(self) -> tuple[datetime, str]:
        """Ordering key: release time, then version."""
        return (self.dateReleased, self.catalogVersion)


@dataclass(frozen=True)
class ParsedCatalog:
    catalog: KevCatalog
    sha256: str
    size: int


def parse_catalog(data: bytes, *, source: str) -> ParsedCatalog:
    """Parse and check a KEV catalog file (see the module docstring).

    Raises:
        KevCatalogError: not JSON, schema-invalid, count mismatch, duplicate CVE, bad version.
    """
    try:
        raw = loads_strict(data, source=source, max_bytes=MAX_KEV_BYTES)
    except MalformedDocumentError as exc:
        raise KevCatalogError(str(exc)) from exc
    problems = schema_problems(SchemaName.KEV, raw)
    if problems:
        raise KevCatalogError(f"{source}: not a KEV catalog: {problems[0]} ({len(problems)} problem(s))", problems)
    try:
        catalog = KevCatalog.model_validate(raw)
    except ValidationError as exc:
        raise KevCatalogError(f"{source}: {validation_problem(exc)}") from exc
    if catalog.dateReleased.utcoffset() is None:
        raise KevCatalogError(f"{source}: dateReleased has no UTC offset")
    if not CATALOG_VERSION.match(catalog.catalogVersion):
        raise KevCatalogError(f"{source}: catalogVersion expected YYYY.MM.DD, found {catalog.catalogVersion!r}")
    if catalog.count != len(catalog.vulnerabilities):
        raise KevCatalogError(f"{source}: count says {catalog.count} entries, the catalog lists "
                              f"{len(catalog.vulnerabilities)}")
    seen: set[str] = set()
    for entry in catalog.vulnerabilities:
        if entry.cveID in seen:
            raise KevCatalogError(f"{source}: {entry.cveID} is listed twice")
        seen.add(entry.cveID)
    return ParsedCatalog(catalog, hashlib.sha256(data).hexdigest(), len(data))


# --- product map ------------------------------------------------------------------------------------


class ProductMapEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vendorProject: str = Field(min_length=1, max_length=256)
    product: str = Field(min_length=1, max_length=256)
    purl: str = Field(min_length=1, max_length=1024)
    #: optional affected range in the purl's scheme (vers:... or bare constraints)
    affected: str | None = Field(default=None, max_length=2048)


class ProductMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = Field(pattern=r"^ringward\.kev-product-map\.v1$")
    products: tuple[ProductMapEntry, ...] = ()


def parse_product_map(raw: Any, *, source: str) -> ProductMap:
    try:
        parsed = ProductMap.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{source}: {validation_problem(exc)}") from exc
    for index, entry in enumerate(parsed.products):
        purl = parse_purl(entry.purl, option=f"{source}: products[{index}].purl")
        if entry.affected is not None:
            parse_range(entry.affected, purl, option=f"{source}: products[{index}].affected")
    return parsed


# --- matching --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """An SBOM component with a purl (the only components the rule can match)."""

    name: str
    version: str
    purl: PackageURL

    @property
    def purl_text(self) -> str:
        return self.purl.to_string()


@dataclass(frozen=True)
class KnownAdvisory:
    advisory_id: str
    purl: str
    range: str
    cves: tuple[str, ...]
    severity: str


@dataclass(frozen=True)
class Finding:
    """One (component, vulnerability) exposure and why the rule matched it."""

    component: Component
    vulnerability: str
    names: frozenset[str]
    in_kev: bool
    rule: str
    source: str

    def document(self) -> dict[str, Any]:
        return {"component": self.component.purl_text, "component_name": self.component.name,
                "component_version": self.component.version, "vulnerability": self.vulnerability,
                "aliases": sorted(self.names - {self.vulnerability}), "in_kev": self.in_kev, "rule": self.rule,
                "source": self.source}


def _purl_match(pattern: PackageURL, component: PackageURL) -> bool:
    from ringward.core.advisories.vex import purl_matches

    return purl_matches(pattern, component)


def _component_in(range_text: str | None, pattern: PackageURL, component: Component) -> bool:
    if range_text is None:
        return True
    affected = parse_range(range_text, pattern, option="range")
    try:
        version = parse_version(component.version, affected, option="component version")
    except InputError:
        return False  # a version the scheme cannot read is not provably inside the range
    return in_range(version, affected)


def find_exposures(
    components: Sequence[Component],
    kev: Sequence[KevEntry],
    *,
    product_map: ProductMap | None,
    advisories: Sequence[KnownAdvisory],
    vex_exposed: Sequence[tuple[PackageURL, frozenset[str]]],
) -> list[Finding]:
    """Every (component, vulnerability) the rule of the module docstring matches, deduplicated.

    ``vex_exposed``: (product purl, vulnerability names) of stored statements with status
    affected / under_investigation.
    """
    kev_by_cve = {entry.cveID: entry for entry in kev}
    by_product: dict[tuple[str, str], list[KevEntry]] = {}
    for entry in kev:
        by_product.setdefault((entry.vendorProject.casefold(), entry.product.casefold()), []).append(entry)
    found: dict[tuple[str, str], Finding] = {}

    def add(finding: Finding) -> None:
        found.setdefault((finding.component.purl_text, finding.vulnerability), finding)

    for component in components:
        for mapped in (product_map.products if product_map else ()):
            pattern = PackageURL.from_string(mapped.purl)
            if not _purl_match(pattern, component.purl) or not _component_in(mapped.affected, pattern, component):
                continue
            for kev_entry in by_product.get((mapped.vendorProject.casefold(), mapped.product.casefold()), []):
                add(Finding(component, kev_entry.cveID, frozenset({kev_entry.cveID}), True, "product-map",
                            f"{mapped.vendorProject}/{mapped.product} -> {mapped.purl}"))
        for advisory in advisories:
            pattern = PackageURL.from_string(advisory.purl)
            if versionless(pattern) != versionless(component.purl):
                continue
            if not _component_in(advisory.range, pattern, component):
                continue
            names = frozenset({advisory.advisory_id, *advisory.cves})
            kev_cves = [c for c in advisory.cves if c in kev_by_cve]
            for cve in kev_cves:
                add(Finding(component, cve, names, True, "advisory", advisory.advisory_id))
            if not kev_cves:
                add(Finding(component, advisory.advisory_id, names, False, "advisory", advisory.advisory_id))
        for product, names in vex_exposed:
            if not _purl_match(product, component.purl):
                continue
            for cve in sorted(names & kev_by_cve.keys()):
                add(Finding(component, cve, names, True, "vex", product.to_string()))
    return sorted(found.values(), key=lambda f: (f.component.purl_text, f.vulnerability))
