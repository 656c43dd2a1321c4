"""Pure-core properties: version order, checksums grammar, safe names, strict JSON."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringward.core.common.checksums import parse_checksums, render_checksums
from ringward.core.common.jsonio import loads_strict
from ringward.core.common.paths import check_relative_name, is_safe_relative_name
from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import MalformedDocumentError, MalformedManifestError, UnsafePathError

numbers = st.integers(min_value=0, max_value=10_000)
identifiers = st.one_of(numbers.map(str), st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True))
versions = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{'.'.join(pre)}" if pre else ""),
    numbers, numbers, numbers, st.lists(identifiers, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(versions, versions, versions)
def test_version_order_is_a_total_order(a: str, b: str, c: str) -> None:
    x, y, z = (ReleaseVersion.parse(v) for v in (a, b, c))
    assert (x < y) + (y < x) + (x == y) == 1
    if x <= y and y <= z:
        assert x <= z


@given(versions)
def test_prerelease_sorts_below_its_release(text: str) -> None:
    version = ReleaseVersion.parse(text)
    core = ReleaseVersion.parse(text.split("-", 1)[0])
    assert version <= core
    assert (version < core) == version.is_prerelease


def test_known_orderings() -> None:
    v = ReleaseVersion.parse
    assert v("1.2.10") > v("1.2.9")
    assert v("1.3.0-rc.10") > v("1.3.0-rc.2")
    assert v("1.3.0-rc.1") < v("1.3.0")
    assert v("1.0.0-alpha") < v("1.0.0-alpha.1") < v("1.0.0-beta") < v("1.0.0")


names = st.lists(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True), min_size=1, max_size=3).map(
    "/".join).filter(lambda n: all(p not in (".", "..") for p in n.split("/")))


@given(st.dictionaries(names, st.from_regex(r"[0-9a-f]{64}", fullmatch=True), min_size=1, max_size=20))
def test_checksums_round_trip(digests: dict[str, str]) -> None:
    folded = {k.casefold() for k in digests}
    if len(folded) != len(digests):
        with pytest.raises(MalformedManifestError):
            parse_checksums(render_checksums(digests))
        return
    assert parse_checksums(render_checksums(digests)).as_dict() == digests


@given(st.binary(max_size=300))
def test_checksums_parser_never_crashes(data: bytes) -> None:
    with contextlib.suppress(MalformedManifestError):
        parse_checksums(data)


@given(st.text(max_size=60))
def test_safe_name_checker_is_consistent(name: str) -> None:
    if is_safe_relative_name(name):
        assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name
        check_relative_name(name, source="t")
    else:
        with pytest.raises(UnsafePathError):
            check_relative_name(name, source="t")


@pytest.mark.parametrize("name", ["a/../b", "/abs", "C:/x", "a\\b", "a//b", "./a", "a/", " a", "a\x00b", "e\u0301"])
def test_unsafe_names(name: str) -> None:
    assert not is_safe_relative_name(name)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(b'{"a": 1, "a": 2}', "duplicate key"), (b'{"a": NaN}', "non-finite"), (b'{"a": 1} x', "Extra data"),
     (b"\xef\xbb\xbf{}", "BOM"), (b'{"a": "\xff"}', "not UTF-8")],
)
def test_strict_json_rejects_ambiguity(data: bytes, fragment: str) -> None:
    with pytest.raises(MalformedDocumentError, match=fragment):
        loads_strict(data, source="doc.json")


def test_strict_json_size_cap() -> None:
    with pytest.raises(MalformedDocumentError, match="at most 10"):
        loads_strict(b"[" + b"1," * 20 + b"1]", source="doc.json", max_bytes=10)
