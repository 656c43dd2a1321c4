"""OpenVEX v0.2.0 documents: models, strict validation, ``@id``, merge and effective status.

Validation is the vendored OpenVEX JSON schema **plus** the stricter statement rules of go-vex's
``Statement.Validate`` (the reference implementation):

- ``not_affected``: a ``justification`` or an ``impact_statement`` (the schema: exactly one), no
  ``action_statement``;
- ``affected``: an ``action_statement``; no ``justification`` or ``impact_statement``;
- ``fixed`` / ``under_investigation``: none of ``justification``, ``impact_statement``,
  ``action_statement``;

and completeness after inheritance: every statement has at least one product and a timestamp
(its own or the document's), ``@context`` is the v0.2.0 context, ``@id`` values are IRIs, product
purls parse (``packageurl-python``), no timestamp lies in the future of ``now``.

Effective status (go-vex ``EffectiveStatement``, vexctl ``merge``): for each (product,
vulnerability) the statement with the latest timestamp wins; a missing statement timestamp is the
document's. Two different statements for the same pair at the same instant are ambiguous and refused.

Product matching (go-vex ``purl`` rules): type, namespace and name equal; a versionless product
purl matches every version, a versioned one only its version; every qualifier of the product purl
must be present with the same value in the component's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from packageurl import PackageURL
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.advisories.validation import SchemaName, schema_problems
from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import InputError, MalformedDocumentError, validation_problem

OPENVEX_CONTEXT: Final = "https://openvex.dev/ns/v0.2.0"
VEX_ID_PREFIX: Final = "https://ringward.dev/vex/vex-"
MAX_VEX_BYTES: Final = 8 * 1024 * 1024


class VexStatus(StrEnum):
    NOT_AFFECTED = "not_affected"
    AFFECTED = "affected"
    FIXED = "fixed"
    UNDER_INVESTIGATION = "under_investigation"


class Justification(StrEnum):
    COMPONENT_NOT_PRESENT = "component_not_present"
    VULNERABLE_CODE_NOT_PRESENT = "vulnerable_code_not_present"
    VULNERABLE_CODE_NOT_IN_EXECUTE_PATH = "vulnerable_code_not_in_execute_path"
    VULNERABLE_CODE_CANNOT_BE_CONTROLLED_BY_ADVERSARY = "vulnerable_code_cannot_be_controlled_by_adversary"
    INLINE_MITIGATIONS_ALREADY_EXIST = "inline_mitigations_already_exist"


#: statuses under which a release carrying the component is not exposed
RESOLVING: Final = frozenset({VexStatus.NOT_AFFECTED, VexStatus.FIXED})


class VexInvalidError(MalformedDocumentError):
    """An OpenVEX document violates the schema or the statement rules; ``problems`` lists each."""

    code = "vex-invalid"

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class _Vex(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VexVulnerability(_Vex):
    id: str | None = Field(default=None, alias="@id")
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    aliases: tuple[str, ...] | None = None

    def names(self) -> set[str]:
        return {self.name, *(self.aliases or ())}


class VexIdentifiers(_Vex):
    purl: str | None = None
    cpe22: str | None = Field(default=None, alias="@cpe22")
    cpe23: str | None = Field(default=None, alias="@cpe23")


class VexSubcomponent(_Vex):
    id: str | None = Field(default=None, alias="@id")
    identifiers: VexIdentifiers | None = None
    hashes: dict[str, str] | None = None


class VexProduct(_Vex):
    id: str | None = Field(default=None, alias="@id")
    identifiers: VexIdentifiers | None = None
    hashes: dict[str, str] | None = None
    subcomponents: tuple[VexSubcomponent, ...] | None = None

    def purl(self) -> str | None:
        if self.identifiers is not None and self.identifiers.purl:
            return self.identifiers.purl
        if self.id and self.id.startswith("pkg:"):
            return self.id
        return None

    def key(self) -> str:
        """The product's identity for merging: its purl (normalised), else its ``@id``."""
        purl = self.purl()
        if purl is not None:
            return PackageURL.from_string(purl).to_string()
        return self.id or ""


class VexStatement(_Vex):
    id: str | None = Field(default=None, alias="@id")
    version: int | None = Field(default=None, ge=1)
    vulnerability: VexVulnerability
    timestamp: datetime | None = None
    last_updated: datetime | None = None
    products: tuple[VexProduct, ...] | None = None
    status: VexStatus
    supplier: str | None = None
    status_notes: str | None = None
    justification: Justification | None = None
    impact_statement: str | None = None
    action_statement: str | None = None
    action_statement_timestamp: datetime | None = None


class VexDocument(_Vex):
    context: str = Field(alias="@context")
    id: str = Field(alias="@id")
    author: str = Field(min_length=1, max_length=256)
    role: str | None = None
    timestamp: datetime
    last_updated: datetime | None = None
    version: int = Field(ge=1)
    tooling: str | None = None
    statements: tuple[VexStatement, ...] = Field(min_length=1)

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def statement_time(self, statement: VexStatement) -> datetime:
        return statement.timestamp or self.timestamp


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _is_iri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme in {"urn", "pkg"}) and " " not in value


def statement_problems(statement: VexStatement, where: str) -> list[str]:
    """go-vex ``Statement.Validate`` rules (stricter than the schema)."""
    problems: list[str] = []
    status = statement.status
    has_justification = statement.justification is not None
    has_impact = bool(statement.impact_statement)
    has_action = bool(statement.action_statement)
    if status is VexStatus.NOT_AFFECTED:
        if not (has_justification or has_impact):
            problems.append(f"{where}: status not_affected requires a justification or an impact_statement")
        if has_action:
            problems.append(f"{where}: status not_affected must not carry an action_statement")
    elif status is VexStatus.AFFECTED:
        if not has_action:
            problems.append(f"{where}: status affected requires an action_statement")
        if has_justification or has_impact:
            problems.append(f"{where}: status affected must not carry a justification or impact_statement")
    else:
        for name, present in (("justification", has_justification), ("impact_statement", has_impact),
                              ("action_statement", has_action)):
            if present:
                problems.append(f"{where}: status {status.value} must not carry {name}")
    return problems


def _time_problems(doc: VexDocument, now: datetime) -> list[str]:
    problems = []
    stamps: list[tuple[str, datetime | None]] = [("timestamp", doc.timestamp), ("last_updated", doc.last_updated)]
    for index, statement in enumerate(doc.statements):
        stamps += [(f"statements[{index}].timestamp", statement.timestamp),
                   (f"statements[{index}].last_updated", statement.last_updated),
                   (f"statements[{index}].action_statement_timestamp", statement.action_statement_timestamp)]
    for where, stamp in stamps:
        if stamp is None:
            continue
        if stamp.utcoffset() is None:
            problems.append(f"$.{where}: timestamp without a UTC offset")
        elif stamp > now:
            problems.append(f"$.{where}: {_iso(stamp)} is in the future (now {_iso(now)})")
    return problems


def document_problems(raw: Any, *, now: datetime) -> tuple[list[str], VexDocument | None]:
    """Every problem of a parsed OpenVEX document, and the model when it parsed."""
    problems = schema_problems(SchemaName.OPENVEX, raw)
    try:
        doc = VexDocument.model_validate(raw)
    except ValidationError as exc:
        return problems or [f"$.{validation_problem(exc)}"], None
    if doc.context != OPENVEX_CONTEXT:
        problems.append(f"$.@context: expected {OPENVEX_CONTEXT!r}, found {doc.context!r}")
    if not _is_iri(doc.id):
        problems.append(f"$.@id: expected an IRI, found {doc.id!r}")
    problems += _time_problems(doc, now)
    for index, statement in enumerate(doc.statements):
        where = f"$.statements[{index}]"
        problems += statement_problems(statement, where)
        if statement.id is not None and not _is_iri(statement.id):
            problems.append(f"{where}.@id: expected an IRI, found {statement.id!r}")
        if not statement.products:
            problems.append(f"{where}.products: a statement needs at least one product")
        for p_index, product in enumerate(statement.products or ()):
            purl = product.purl()
            if purl is None and not product.id:
                problems.append(f"{where}.products[{p_index}]: needs an @id or identifiers.purl")
                continue
            if purl is not None:
                try:
                    PackageURL.from_string(purl)
                except ValueError as exc:
                    problems.append(f"{where}.products[{p_index}]: not a package URL: {exc}")
            elif product.id is not None and not _is_iri(product.id):
                problems.append(f"{where}.products[{p_index}].@id: expected an IRI, found {product.id!r}")
    return sorted(set(problems)), doc


def parse_vex(data: bytes, *, source: str, now: datetime) -> VexDocument:
    """Strict JSON, the schema and every rule above.

    Raises:
        VexInvalidError: with every problem (the message names the first and the count).
    """
    try:
        raw = loads_strict(data, source=source, max_bytes=MAX_VEX_BYTES)
    except MalformedDocumentError as exc:
        raise VexInvalidError(str(exc)) from exc
    problems, doc = document_problems(raw, now=now)
    if problems or doc is None:
        raise VexInvalidError(f"{source}: {problems[0]} ({len(problems)} problem(s))", problems)
    return doc


def canonical_id(author: str, timestamp: datetime, version: int, statements: Iterable[VexStatement]) -> str:
    """A content-derived ``@id`` (after go-vex ``CanonicalHash``: author, time, version, statements)."""
    body = {
        "author": author,
        "timestamp": _iso(timestamp),
        "version": version,
        "statements": sorted(dumps_canonical(s.model_dump(mode="json", by_alias=True, exclude_none=True))
                              .decode("utf-8") for s in statements),
    }
    return VEX_ID_PREFIX + hashlib.sha256(dumps_canonical(body)).hexdigest()


def build_statement(
    *, vulnerability: str, products: Sequence[str], status: VexStatus, timestamp: datetime,
    aliases: Sequence[str] = (), justification: Justification | None = None, impact_statement: str | None = None,
    action_statement: str | None = None, status_notes: str | None = None, supplier: str | None = None,
) -> VexStatement:
    """One statement from command-line values; the rules above apply (InputError naming the option)."""
    for purl in products:
        try:
            PackageURL.from_string(purl)
        except ValueError as exc:
            raise InputError(f"--product: not a package URL: {exc}") from exc
    if not products:
        raise InputError("--product: at least one product purl is required")
    statement = VexStatement(
        vulnerability=VexVulnerability(name=vulnerability, aliases=tuple(aliases) or None),
        timestamp=timestamp,
        products=tuple(VexProduct(id=p, identifiers=VexIdentifiers(purl=p)) for p in products),
        status=status, justification=justification, impact_statement=impact_statement,
        action_statement=action_statement, action_statement_timestamp=timestamp if action_statement else None,
        status_notes=status_notes, supplier=supplier,
    )
    problems = statement_problems(statement, "statement")
    if problems:
        raise InputError(problems[0].replace("statement: ", "--status: "))
    return statement


def build_document(statements: Sequence[VexStatement], *, author: str, timestamp: datetime, version: int = 1,
                   doc_id: str | None = None, role: str | None = None, tooling: str = "ringward") -> VexDocument:
    ident = doc_id or canonical_id(author, timestamp, version, statements)
    if not _is_iri(ident):
        raise InputError(f"--id: expected an IRI (https://..., urn:...), found {ident!r}")
    return VexDocument(context=OPENVEX_CONTEXT, id=ident, author=author, role=role, timestamp=timestamp,
                       version=version, tooling=tooling, statements=tuple(statements))


def per_product(doc: VexDocument) -> list[tuple[str, VexStatement, datetime]]:
    """(product key, single-product statement with its effective timestamp, time) for each pair."""
    out = []
    for statement in doc.statements:
        when = doc.statement_time(statement)
        for product in statement.products or ():
            single = statement.model_copy(update={"products": (product,), "timestamp": when})
            out.append((product.key(), single, when))
    return out


def effective_statements(docs: Sequence[VexDocument]) -> dict[tuple[str, str], VexStatement]:
    """Latest statement per (product key, vulnerability name), by timestamp.

    Raises:
        VexInvalidError: two different statements for the same pair at the same instant.
    """
    latest: dict[tuple[str, str], tuple[datetime, VexStatement]] = {}
    for doc in docs:
        for key, statement, when in per_product(doc):
            pair = (key, statement.vulnerability.name)
            current = latest.get(pair)
            if current is None or when > current[0]:
                latest[pair] = (when, statement)
            elif when == current[0] and _content(statement) != _content(current[1]):
                raise VexInvalidError(
                    f"conflicting statements for {key} / {pair[1]} at the same time {_iso(when)}: "
                    f"{current[1].status.value} and {statement.status.value}; one must be later")
    return {pair: statement for pair, (_, statement) in latest.items()}


def _content(statement: VexStatement) -> bytes:
    return dumps_canonical(statement.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"id"}))


def merge(docs: Sequence[VexDocument], *, author: str, now: datetime, doc_id: str | None = None) -> VexDocument:
    """One document holding the effective statement of every (product, vulnerability) pair,
    oldest first (what vexctl merge keeps, minus the statements later ones superseded)."""
    if not docs:
        raise InputError("vex merge: at least one document is required")
    statements = sorted(effective_statements(docs).values(),
                        key=lambda s: (s.timestamp or now, s.vulnerability.name, s.products[0].key() if s.products
                                       else ""))
    return build_document(statements, author=author, timestamp=now, doc_id=doc_id, tooling="ringward vex merge")


def purl_matches(product: PackageURL, component: PackageURL) -> bool:
    """go-vex purl matching of a statement's product against a component (see the module docstring)."""
    if (product.type, product.namespace or "", product.name) != (component.type, component.namespace or "",
                                                                  component.name):
        return False
    if product.version is not None and product.version != component.version:
        return False
    theirs = component.qualifiers if isinstance(component.qualifiers, dict) else {}
    mine = product.qualifiers if isinstance(product.qualifiers, dict) else {}
    return all(theirs.get(k) == v for k, v in mine.items())


def status_for(docs: Sequence[VexDocument], component: PackageURL, vulnerability_names: set[str]
               ) -> VexStatement | None:
    """The latest statement of ``docs`` whose product matches ``component`` and whose vulnerability
    is one of ``vulnerability_names`` (name or alias)."""
    best: tuple[datetime, VexStatement] | None = None
    for doc in docs:
        for _key, statement, when in per_product(doc):
            if not statement.vulnerability.names() & vulnerability_names:
                continue
            purl = (statement.products or (VexProduct(),))[0].purl()
            if purl is None or not purl_matches(PackageURL.from_string(purl), component):
                continue
            if best is None or when > best[0]:
                best = (when, statement)
    return None if best is None else best[1]
