"""Property: for any interval set, the OSV events Ringward emits describe exactly the versions the
univers range contains (evaluated with OSV's event semantics), and the OSV record stays schema-valid."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ringward.core.advisories.identity import in_range, osv_events, parse_range, parse_version, product_purl
from ringward.core.advisories.validation import SchemaName, schema_problems

PURL = product_purl("pkg:golang/github.com/acme/runtime")
VERSIONS = [f"{a}.{b}.{c}" for a in range(3) for b in range(3) for c in range(3)]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _osv_affected(events: list[dict[str, str]], versions: list[str], candidate: str) -> bool:
    """OSV's evaluation for one SEMVER range: walk events in version order."""
    if candidate in versions:
        return True
    affected = False
    ordered = sorted(events, key=lambda e: (0,) if next(iter(e.values())) == "0" else _key(next(iter(e.values()))))
    for event in ordered:
        kind, at = next(iter(event.items()))
        if kind == "introduced" and (at == "0" or _key(candidate) >= _key(at)):
            affected = True
        elif (kind == "fixed" and _key(candidate) >= _key(at)) or (
                kind == "last_affected" and _key(candidate) > _key(at)):
            affected = False
    return affected


@st.composite
def interval_sets(draw: Any) -> str:
    points = sorted(draw(st.sets(st.sampled_from(VERSIONS), min_size=1, max_size=6)), key=_key)
    open_start = draw(st.booleans())
    parts = []
    if open_start:
        parts.append(f"<{points[0]}")
        points = points[1:]
    for index in range(0, len(points) - 1, 2):
        parts += [f">={points[index]}", f"<{points[index + 1]}"]
    if len(points) % 2 == 1:
        parts.append(f">={points[-1]}")
    return "|".join(parts) or "<0.0.1"


@settings(max_examples=150, deadline=None, database=None)  # writes nothing outside tmp_path
@given(interval_sets())
def test_osv_events_match_univers_membership(spec: str) -> None:
    affected = parse_range(spec, PURL)
    events, versions = osv_events(affected)
    doc = {"id": "x_RW-1", "modified": "2026-12-01T00:00:00Z",
           "affected": [{"package": {"ecosystem": "Go", "name": "github.com/acme/runtime"},
                         "ranges": [{"type": "SEMVER", "events": events}]}]}
    assert schema_problems(SchemaName.OSV, doc) == []
    for candidate in VERSIONS:
        expected = in_range(parse_version(candidate, affected, option="v"), affected)
        assert _osv_affected(events, versions, candidate) == expected, (spec, candidate, events)
