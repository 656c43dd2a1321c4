"""Rules an evidence bundle on disk must satisfy to match its record (pure; callers hash files).

A bundle directory holds exactly the record's artifacts plus a ``checksums.txt`` whose lines are
``<64 lowercase hex>  <relative posix name>`` sorted by name. Verification (numbered EB rules):

- EB1 the bundle directory resolves inside the evidence root and is a directory;
- EB2 ``checksums.txt`` parses strictly and lists exactly the record's artifacts and digests;
- EB3 every listed file exists as a regular file (no links) with the recorded size and SHA-256;
- EB4 no other file is present (an unlisted file is a break, not a warning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ringward.core.common.checksums import parse_checksums
from ringward.core.errors import RingwardError
from ringward.core.evidence.records import ChainBreak, EvidenceArtifact

CHECKSUMS_NAME = "checksums.txt"


@dataclass(frozen=True)
class ObservedFile:
    """What was found on disk for one name."""

    sha256: str
    size_bytes: int


def parse_bundle_checksums(data: bytes) -> list[tuple[str, str]]:
    """Parse ``checksums.txt`` strictly (:func:`ringward.core.checksums.parse_checksums`) into
    (name, sha256) pairs; an empty file lists nothing.

    Raises:
        ValueError: with a message naming the line and what was expected vs found.
    """
    if data == b"":
        return []
    try:
        return list(parse_checksums(data, source=CHECKSUMS_NAME).entries)
    except RingwardError as exc:
        raise ValueError(exc.message) from exc


def render_bundle_checksums(artifacts: Sequence[EvidenceArtifact]) -> bytes:
    """The ``checksums.txt`` a bundle with these artifacts must carry."""
    return "".join(f"{a.sha256}  {a.name}\n" for a in sorted(artifacts, key=lambda a: a.name)).encode("utf-8")


def check_bundle(
    *,
    record_id: int,
    artifacts: Sequence[EvidenceArtifact],
    checksums: bytes | None,
    observed: Mapping[str, ObservedFile],
    links: Sequence[str] = (),
) -> ChainBreak | None:
    """Compare a bundle as found on disk with its record (EB2-EB4); None when it matches.

    Args:
        record_id: the record the bundle belongs to (for the break).
        artifacts: the record's artifacts (the trusted list).
        checksums: bytes of the bundle's ``checksums.txt``, None when missing.
        observed: every regular file found in the bundle except ``checksums.txt``.
        links: names found in the bundle that are symlinks or not regular files.
    """
    if checksums is None:
        return ChainBreak(record_id=record_id, check="checksums.txt", expected="present", found="missing")
    try:
        listed = parse_bundle_checksums(checksums)
    except ValueError as exc:
        return ChainBreak(record_id=record_id, check="checksums.txt", expected="strict manifest", found=str(exc))
    recorded = {a.name: a for a in artifacts}
    listed_map = dict(listed)
    if set(listed_map) != set(recorded):
        missing = sorted(set(recorded) - set(listed_map))
        extra = sorted(set(listed_map) - set(recorded))
        return ChainBreak(
            record_id=record_id,
            check="checksums.txt entries",
            expected=f"the record's {len(recorded)} artifacts",
            found=f"missing {missing or '-'}, unrecorded {extra or '-'}",
        )
    for name, digest in listed:
        if recorded[name].sha256 != digest:
            return ChainBreak(
                record_id=record_id,
                check=f"checksums.txt entry {name}",
                expected=recorded[name].sha256,
                found=digest,
            )
    if links:
        name = sorted(links)[0]
        return ChainBreak(
            record_id=record_id,
            check=f"file {name}",
            expected="a regular file",
            found="a link or special file",
        )
    for name in sorted(recorded):
        artifact = recorded[name]
        seen = observed.get(name)
        if seen is None:
            return ChainBreak(record_id=record_id, check=f"file {name}", expected="present", found="missing")
        if seen.size_bytes != artifact.size_bytes:
            return ChainBreak(
                record_id=record_id,
                check=f"file {name} size",
                expected=str(artifact.size_bytes),
                found=str(seen.size_bytes),
            )
        if seen.sha256 != artifact.sha256:
            return ChainBreak(
                record_id=record_id, check=f"file {name} sha256", expected=artifact.sha256, found=seen.sha256
            )
    unlisted = sorted(set(observed) - set(recorded))
    if unlisted:
        return ChainBreak(
            record_id=record_id,
            check="unlisted file",
            expected="only recorded artifacts",
            found=", ".join(unlisted[:5]),
        )
    return None
