"""What ``ringward advisory publish`` exports from an advisory record: OSV JSON (validated against
the vendored OSV schema), a GitHub-Security-Advisory-shaped document (the body of GitHub's
"create a repository security advisory" API: summary, description, severity, cve_id, cwe_ids,
vulnerabilities[], cvss_vector_string, credits) and the seed's advisory text template.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from ringward.core.advisories.identity import (
    ecosystem_of,
    ghsa_ranges,
    osv_events,
    osv_package_name,
    parse_range,
    product_purl,
)
from ringward.core.advisories.record import AdvisoryRecord
from ringward.core.advisories.validation import SchemaName, schema_document, schema_problems
from ringward.core.errors import VerificationError

OSV_SCHEMA_VERSION: Final = "1.7.0"
GHSA_SHAPE: Final = "ringward.github-security-advisory.v1"


def _osv_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def osv_id(advisory_id: str) -> str:
    """The advisory id when it carries a known OSV home-database prefix, else ``x_<id>``."""
    prefix = re.compile(schema_document(SchemaName.OSV)["$defs"]["prefix"]["pattern"])
    return advisory_id if prefix.match(advisory_id) else f"x_{advisory_id}"


def _references(record: AdvisoryRecord) -> list[dict[str, str]]:
    refs: list[dict[str, str]] = []
    if record.fix.pull_request:
        refs.append({"type": "FIX", "url": record.fix.pull_request})
    refs.extend({"type": "PACKAGE", "url": url} for url in record.fix.release_assets)
    return refs


def osv_document(record: AdvisoryRecord, *, published: datetime, advisory_sha256: str) -> dict[str, Any]:
    """The OSV record; raises VerificationError if it does not validate against the vendored schema."""
    purl = product_purl(record.affected.purl, option="affected.purl")
    eco = ecosystem_of(purl)
    affected_range = parse_range(record.affected.range, purl, option="affected.range")
    events, versions = osv_events(affected_range)
    affected: dict[str, Any] = {
        "package": {"ecosystem": eco.osv, "name": osv_package_name(purl), "purl": record.affected.purl},
        "ranges": [{"type": eco.osv_range, "events": events}] if events else [],
        "ecosystem_specific": {"components": list(record.affected.components)},
    }
    if versions:
        affected["versions"] = versions
    details = record.details or record.summary
    doc: dict[str, Any] = {
        "schema_version": OSV_SCHEMA_VERSION,
        "id": osv_id(record.advisory_id),
        "modified": _osv_time(published),
        "published": _osv_time(published),
        "aliases": [a for a in (record.cve, *record.aliases) if a],
        "summary": record.summary,
        "details": details,
        "severity": [{"type": "CVSS_V4", "score": record.severity.cvss.vector}],
        "affected": [affected],
        "references": _references(record),
        "database_specific": {
            "ringward_advisory_id": record.advisory_id,
            "severity": record.severity.effective.value,
            "severity_rule": record.severity.rule,
            "cvss_base_score": record.severity.cvss.base_score,
            "user_safety_classes": [c.value for c in record.severity.user_safety_classes],
            "cwe_ids": list(record.cwe),
            "advisory_sha256": advisory_sha256,
        },
    }
    if record.reporter:
        doc["credits"] = [{"name": record.reporter, "type": "REPORTER"}]
    problems = schema_problems(SchemaName.OSV, doc)
    if problems:
        raise VerificationError(f"OSV export does not validate against the OSV schema: {problems[0]}")
    return doc


def ghsa_document(record: AdvisoryRecord) -> dict[str, Any]:
    purl = product_purl(record.affected.purl, option="affected.purl")
    eco = ecosystem_of(purl)
    affected_range = parse_range(record.affected.range, purl, option="affected.range")
    patched = ", ".join(record.affected.fixed)
    description = "\n\n".join(part for part in (
        record.details or record.summary,
        f"### Impact\n{record.customer_impact}" if record.customer_impact else "",
        f"### Prerequisites\n{record.exploitation_prerequisites}" if record.exploitation_prerequisites else "",
        f"### Workarounds\n{record.mitigation_before_upgrade}" if record.mitigation_before_upgrade else "",
        f"### User-safety impact\n{record.user_safety_impact}" if record.user_safety_impact else "",
    ) if part)
    return {
        "shape": GHSA_SHAPE,
        "summary": record.summary,
        "description": description,
        "severity": record.severity.effective.value,
        "cve_id": record.cve,
        "cwe_ids": list(record.cwe),
        "cvss_vector_string": record.severity.cvss.vector,
        "vulnerabilities": [
            {
                "package": {"ecosystem": eco.ghsa, "name": osv_package_name(purl)},
                "vulnerable_version_range": vulnerable,
                "patched_versions": patched,
                "vulnerable_functions": [],
            }
            for vulnerable in ghsa_ranges(affected_range)
        ],
        "credits": [{"login": record.reporter, "type": "reporter"}] if record.reporter else [],
    }


def _date(value: Any) -> str:
    return value.isoformat() if value is not None else "not yet"


def advisory_text(record: AdvisoryRecord) -> str:
    """The advisory in the seed's template (Summary ... Disclosure) plus the changelog line."""
    score = record.severity.cvss
    safety = record.user_safety_impact or (
        "user-safety class: " + ", ".join(c.value for c in record.severity.user_safety_classes)
        if record.severity.user_safety_classes else "none identified")
    lines = [
        f"# {record.advisory_id}: {record.summary}",
        "",
        f"**Summary**: {record.summary}",
        f"**Severity**: {record.severity.effective.value} ({record.severity.rule})",
        f"**Affected**: {record.affected.purl} {record.affected.range} ({', '.join(record.affected.components)})",
        f"**Patched**: {', '.join(record.affected.fixed)}",
        f"**CVE**: {record.cve or 'not assigned'}",
        f"**CWE**: {', '.join(record.cwe)}",
        f"**CVSS v4**: {score.vector} ({score.base_score} {score.rating})",
        f"**User-safety impact**: {safety}",
        f"**Reporter**: {record.reporter or 'anonymous'}",
        f"**Acknowledgement**: {_date(record.timeline.acknowledged)}",
        f"**Triage**: {_date(record.timeline.triaged)}",
        f"**Fix**: {_date(record.timeline.fixed)}",
        f"**Disclosure**: {_date(record.timeline.disclosed)}",
        "",
    ]
    for title, text in (("Customer impact", record.customer_impact),
                        ("Exploitation prerequisites", record.exploitation_prerequisites),
                        ("Mitigation before upgrade", record.mitigation_before_upgrade)):
        if text:
            lines += [f"## {title}", "", text, ""]
    if record.verification_steps:
        lines += ["## Verification", "", *(f"    {step}" for step in record.verification_steps), ""]
    if record.links.packages:
        lines += ["## Release evidence", ""]
        for package in record.links.packages:
            lines.append(f"- {package.runtime} {package.version}: checksums {package.checksums_digest}")
            lines += [f"  - {doc.value}: {link.name} sha256:{link.sha256}" for doc, link in package.documents.items()]
        lines.append("")
    cve_or_cwe = record.cve or ", ".join(record.cwe)
    lines += ["## Changelog", "",
              f"- security: {record.affected.name} — fix {cve_or_cwe}; "
              f"user-safety impact: {safety.splitlines()[0]}. Credit: {record.reporter or 'anonymous'}.", ""]
    return "\n".join(lines)
