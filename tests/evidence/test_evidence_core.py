"""The pure core of evidence: the link encoding (a wire format), the verifier, bundle rules."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringward.core.evidence.files import ObservedFile, check_bundle, render_bundle_checksums
from ringward.core.evidence.records import (
    GENESIS_HASH,
    SUBJECT_FIELDS,
    ChainRow,
    ChainVerifier,
    EvidenceArtifact,
    format_timestamp,
    link_hash,
    link_preimage,
)

H = "a" * 64


def test_link_preimage_is_the_documented_array() -> None:
    subject = [None] * len(SUBJECT_FIELDS)
    subject[SUBJECT_FIELDS.index("status")] = "staged"
    subject[SUBJECT_FIELDS.index("success")] = True
    preimage = link_preimage(
        7,
        "k",
        'ünïcode "actor"',
        "2026-01-01T00:00:00.000000Z",
        None,
        subject,
        H,
        "b/c",
        [["f.json", H, 3]],
        GENESIS_HASH,
    )
    expected = (
        '["ringward.evidence-record.v1",7,"k","ünïcode \\"actor\\"","2026-01-01T00:00:00.000000Z",null,'
        'null,null,null,null,null,null,"staged",null,null,null,null,true,'
        f'"{H}","b/c",[["f.json","{H}",3]],"{GENESIS_HASH}"]'
    )
    assert preimage == expected.encode("utf-8")
    assert (
        link_hash(
            7,
            "k",
            'ünïcode "actor"',
            "2026-01-01T00:00:00.000000Z",
            None,
            subject,
            H,
            "b/c",
            [["f.json", H, 3]],
            GENESIS_HASH,
        )
        == hashlib.sha256(preimage).hexdigest()
    )


@given(st.lists(st.one_of(st.text(), st.integers(), st.booleans(), st.none()), max_size=30))
def test_fast_encoder_matches_the_standard_encoder(values: list[object]) -> None:
    from ringward.core.evidence.records import _link_encode

    reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(values)
    assert _link_encode(values) == reference


def test_format_timestamp_is_fixed_width_utc() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    plus_two = datetime(2026, 1, 2, 5, 4, 5, 7, tzinfo=UTC).astimezone()
    assert format_timestamp(plus_two) == "2026-01-02T05:04:05.000007Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 1, 2))


def _rows(n: int) -> list[ChainRow]:
    rows, previous = [], GENESIS_HASH
    for i in range(1, n + 1):
        payload = json.dumps({"i": i})
        digest = hashlib.sha256(payload.encode()).hexdigest()
        when = format_timestamp(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i))
        subject = {"status": "ok"}
        record = link_hash(
            i, "k", "a", when, None, [subject.get(f) for f in SUBJECT_FIELDS], digest, None, [], previous
        )
        rows.append(
            ChainRow(
                id=i,
                kind="k",
                actor="a",
                created_at=when,
                flow_run_id=None,
                subject=subject,
                payload_text=payload,
                payload_sha256=digest,
                bundle_dir=None,
                artifacts=[],
                previous_hash=previous,
                record_hash=record,
            )
        )
        previous = record
    return rows


def test_verifier_accepts_a_good_chain_and_names_each_kind_of_break() -> None:
    rows = _rows(5)
    good = ChainVerifier()
    assert all(good.feed(r) is None for r in rows)
    assert good.finish(head_id=5, head_hash=rows[-1].record_hash) is None and good.count == 5

    def first_break(mutated: list[ChainRow], head: tuple[int, str] | None = None) -> tuple[int | None, str]:
        verifier = ChainVerifier()
        for row in mutated:
            if verifier.feed(row) is not None:
                break
        brk = verifier.finish(
            head_id=(head or (5, rows[-1].record_hash))[0], head_hash=(head or (5, rows[-1].record_hash))[1]
        )
        assert brk is not None
        return brk.record_id, brk.check

    edited = [*rows[:2], rows[2].model_copy(update={"actor": "mallory"}), *rows[3:]]
    assert first_break(edited) == (3, "record_hash")
    payload = [*rows[:1], rows[1].model_copy(update={"payload_text": '{"i": 99}'}), *rows[2:]]
    assert first_break(payload) == (2, "payload_sha256")
    assert first_break([*rows[:2], *rows[3:]]) == (4, "record id")
    relinked = [*rows[:3], rows[3].model_copy(update={"previous_hash": H}), rows[4]]
    assert first_break(relinked) == (4, "previous_hash")
    backwards = [*rows[:4], rows[4].model_copy(update={"created_at": "2000-01-01T00:00:00.000000Z"})]
    assert first_break(backwards) == (5, "created_at order")
    assert first_break(rows[:4]) == (None, "chain head")


def test_check_bundle_rules() -> None:
    a = EvidenceArtifact(name="a.json", sha256=hashlib.sha256(b"a").hexdigest(), size_bytes=1)
    checksums = render_bundle_checksums([a])
    seen = {"a.json": ObservedFile(a.sha256, 1)}
    assert check_bundle(record_id=1, artifacts=[a], checksums=checksums, observed=seen) is None
    assert check_bundle(record_id=1, artifacts=[], checksums=b"", observed={}) is None

    def check(**changes: object) -> str:
        values: dict[str, object] = {"record_id": 1, "artifacts": [a], "checksums": checksums, "observed": seen}
        values.update(changes)
        brk = check_bundle(**values)  # type: ignore[arg-type]
        assert brk is not None
        return brk.check

    assert check(checksums=None) == "checksums.txt"
    assert check(checksums=b"zz  a.json\n") == "checksums.txt"
    assert check(checksums=checksums + checksums) == "checksums.txt"  # duplicate entry
    assert check(observed={}) == "file a.json"
    assert check(observed={"a.json": ObservedFile(a.sha256, 2)}) == "file a.json size"
    assert check(observed={"a.json": ObservedFile(H, 1)}) == "file a.json sha256"
    assert check(observed={**seen, "x": ObservedFile(H, 1)}) == "unlisted file"
    assert check(links=["a.json"]) == "file a.json"
