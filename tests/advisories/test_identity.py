"""Package identities (packageurl-python) and version ranges (univers), and their OSV / GitHub forms."""

from __future__ import annotations

import pytest

from ringward.core.advisories.identity import (
    ghsa_ranges,
    in_range,
    osv_events,
    osv_package_name,
    parse_purl,
    parse_range,
    parse_version,
    product_purl,
)
from ringward.core.errors import InputError

GO = "pkg:golang/github.com/acme/runtime"


def test_product_purl_and_names() -> None:
    purl = product_purl(GO)
    assert (purl.type, purl.namespace, purl.name) == ("golang", "github.com/acme", "runtime")
    assert osv_package_name(purl) == "github.com/acme/runtime"
    assert osv_package_name(product_purl("pkg:maven/org.acme/widget")) == "org.acme:widget"
    assert osv_package_name(product_purl("pkg:npm/%40acme/widget")) == "@acme/widget"


@pytest.mark.parametrize(("text", "expected"), [
    ("golang/github.com/acme/runtime", "not a package URL"),
    ("pkg:golang/github.com/acme/runtime@v1.2.3", "names no version"),
    ("pkg:deb/debian/openssl", "not supported"),
    ("", "expected a package URL"),
])
def test_bad_product_purls(text: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        product_purl(text)


def test_parse_purl_reports_the_library_reason() -> None:
    with pytest.raises(InputError, match="--product: not a package URL"):
        parse_purl("pkg:", option="--product")


def test_ranges_bare_and_vers_forms_agree() -> None:
    purl = product_purl(GO)
    bare = parse_range(">=1.0.0|<1.2.3", purl)
    full = parse_range("vers:golang/>=v1.0.0|<v1.2.3", purl)
    assert str(bare) == str(full) == "vers:golang/>=1.0.0|<1.2.3"
    assert in_range(parse_version("1.2.2", bare, option="v"), bare)
    assert in_range(parse_version("v1.0.0", bare, option="v"), bare)
    assert not in_range(parse_version("1.2.3", bare, option="v"), bare)
    assert not in_range(parse_version("0.9.9", bare, option="v"), bare)


@pytest.mark.parametrize(("text", "expected"), [
    ("vers:npm/<1.0.0", "does not match the product purl type"),
    ("vers:nope/<1.0.0", "unknown vers scheme"),
    ("<bogus", "invalid version range"),
    (">=1.0.0|>=1.1.0", "invalid version range"),
    ("   ", "expected a version range"),
])
def test_bad_ranges(text: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        parse_range(text, product_purl(GO))


def test_bad_version_in_scheme() -> None:
    affected = parse_range("<1.2.3", product_purl(GO))
    with pytest.raises(InputError, match="not a valid golang version"):
        parse_version("not-a-version", affected, option="--fixed")


def test_osv_events() -> None:
    purl = product_purl(GO)
    assert osv_events(parse_range(">=1.0.0|<1.2.3", purl)) == ([{"introduced": "1.0.0"}, {"fixed": "1.2.3"}], [])
    assert osv_events(parse_range("<1.2.3", purl)) == ([{"introduced": "0"}, {"fixed": "1.2.3"}], [])
    assert osv_events(parse_range("<=1.2.0", purl)) == ([{"introduced": "0"}, {"last_affected": "1.2.0"}], [])
    assert osv_events(parse_range(">=1.0.0|<1.1.0|>=2.0.0|<2.0.5", purl))[0] == [
        {"introduced": "1.0.0"}, {"fixed": "1.1.0"}, {"introduced": "2.0.0"}, {"fixed": "2.0.5"}]
    assert osv_events(parse_range("1.0.1", purl)) == ([], ["1.0.1"])
    with pytest.raises(InputError, match="cannot be expressed in OSV"):
        osv_events(parse_range(">1.0.0|<1.2.3", purl))
    with pytest.raises(InputError, match="cannot mix"):
        osv_events(parse_range("<1.0.0|>=1.1.0|<=1.2.0", purl))


def test_ghsa_ranges() -> None:
    purl = product_purl(GO)
    assert ghsa_ranges(parse_range(">=1.0.0|<1.2.3", purl)) == [">= 1.0.0, < 1.2.3"]
    assert ghsa_ranges(parse_range(">=1.0.0|<1.1.0|>=2.0.0", purl)) == [">= 1.0.0, < 1.1.0", ">= 2.0.0"]
    assert ghsa_ranges(parse_range("<=1.2.0", purl)) == ["<= 1.2.0"]
