"""`ringward evidence search --total bounded|exact|none` and `--runtime` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringward.core.evidence.query import DEFAULT_TOTAL_LIMIT
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import open_store
from tests.evidence.helpers import cli


def _fill(count: int) -> None:
    with open_store() as store:
        store.append_many(
            [
                EvidenceDraft(
                    kind="release-package-verification",
                    actor="bot",
                    subject=EvidenceSubject(runtime="node" if i % 10 == 0 else "python"),
                    payload={"i": i},
                )
                for i in range(count)
            ]
        )


def test_total_modes_and_the_runtime_filter(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(DEFAULT_TOTAL_LIMIT + 10)
    bounded = cli(capsys, "evidence", "search", "--kind", "release-package-verification", "--limit", "2")
    assert bounded.code == 0 and f"2 of {DEFAULT_TOTAL_LIMIT:,}+ matching record(s)" in bounded.out
    exact = json.loads(
        cli(capsys, "evidence", "search", "--kind", "release-package-verification", "--total", "exact", "--json").out
    )
    assert (exact["total"], exact["total_is_lower_bound"]) == (DEFAULT_TOTAL_LIMIT + 10, False)
    none = cli(capsys, "evidence", "search", "--kind", "release-package-verification", "--total", "none")
    assert none.code == 0 and "50 of ? matching record(s)" in none.out
    node = json.loads(cli(capsys, "evidence", "search", "--runtime", "node", "--limit", "500", "--json").out)
    assert node["total"] == (DEFAULT_TOTAL_LIMIT + 10 + 9) // 10
    assert {item["subject"]["runtime"] for item in node["items"]} == {"node"}


def test_a_bad_total_mode_is_one_line_exit_2(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused = cli(capsys, "evidence", "search", "--total", "roughly")
    assert refused.code == 2
    assert refused.err.strip() == "error: --total: expected bounded, exact or none, found 'roughly'"
