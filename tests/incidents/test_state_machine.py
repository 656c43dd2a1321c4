"""The incident record's state machine (pure): every legal transition and every illegal one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringward.core.errors import InputError
from ringward.core.incidents import record as model
from ringward.core.incidents.record import (
    DisclosureField,
    IncidentLinks,
    IncidentRecord,
    IncidentSeverity,
    IncidentState,
    IncidentStateError,
    IncidentType,
    incident_id,
    parse_disclosure,
    parse_links,
)
from tests.incidents.conftest import DIGEST, T0


def _open(**overrides: object) -> IncidentRecord:
    fields: dict[str, object] = {"dedup_key": "k", "generation": 1, "supersedes": None,
                                 "type": IncidentType.VULNERABILITY_REPORT, "severity": IncidentSeverity.HIGH,
                                 "summary": "auth bypass", "reporter": "alice", "links": IncidentLinks(),
                                 "actor": "secops", "now": T0}
    fields.update(overrides)
    return model.open_incident(**fields)  # type: ignore[arg-type]


def test_open_ack_update_close_is_the_happy_path_and_history_records_each_step() -> None:
    opened = _open()
    assert opened.state is IncidentState.OPEN and opened.incident_id == incident_id("k", 1)
    acked = model.acknowledge(opened, actor="bob", now=T0 + timedelta(hours=1))
    assert acked is not None and acked.state is IncidentState.ACKNOWLEDGED and acked.acknowledged_by == "bob"
    updated = model.update(acked, actor="bob", now=T0 + timedelta(days=2), note="triaged",
                           disclosure={DisclosureField.TRIAGE: T0 + timedelta(days=1)})
    assert updated.state is IncidentState.ACKNOWLEDGED and updated.disclosure_timeline.triage == T0 + timedelta(days=1)
    closed = model.close(updated, actor="bob", now=T0 + timedelta(days=3), resolution="fixed in 1.2.4")
    assert closed.state is IncidentState.CLOSED and closed.resolution == "fixed in 1.2.4"
    assert [u.action for u in closed.updates] == ["open", "ack", "update", "close"]
    # the record round-trips through its JSON form (what the store keeps)
    assert IncidentRecord.model_validate(closed.document()) == closed


def test_update_is_allowed_while_open_and_keeps_the_previous_date() -> None:
    first = model.update(_open(), actor="a", now=T0 + timedelta(hours=2), note=None,
                         disclosure={DisclosureField.ACKNOWLEDGEMENT: T0 + timedelta(hours=1)})
    assert first.state is IncidentState.OPEN
    second = model.update(first, actor="a", now=T0 + timedelta(hours=3), note="corrected",
                          disclosure={DisclosureField.ACKNOWLEDGEMENT: T0 + timedelta(hours=2)})
    assert second.updates[-1].previous_disclosure == {"acknowledgement": T0 + timedelta(hours=1)}
    assert second.disclosure_timeline.acknowledgement == T0 + timedelta(hours=2)


def test_ack_by_the_same_actor_again_is_a_no_op_and_by_another_is_refused() -> None:
    acked = model.acknowledge(_open(), actor="bob", now=T0)
    assert acked is not None
    assert model.acknowledge(acked, actor="bob", now=T0 + timedelta(hours=1)) is None
    with pytest.raises(IncidentStateError, match="already acknowledged by bob"):
        model.acknowledge(acked, actor="carol", now=T0 + timedelta(hours=1))


def test_close_while_open_is_refused_acknowledge_first() -> None:
    with pytest.raises(IncidentStateError, match="acknowledge it first"):
        model.close(_open(), actor="bob", now=T0, resolution="nothing")


@pytest.mark.parametrize("action", ["ack", "update", "close"])
def test_closed_is_final(action: str) -> None:
    acked = model.acknowledge(_open(), actor="bob", now=T0)
    assert acked is not None
    closed = model.close(acked, actor="bob", now=T0 + timedelta(hours=1), resolution="done")
    later = T0 + timedelta(hours=2)
    with pytest.raises(IncidentStateError, match="closed is final"):
        if action == "ack":
            model.acknowledge(closed, actor="bob", now=later)
        elif action == "update":
            model.update(closed, actor="bob", now=later, note="x", disclosure={})
        else:
            model.close(closed, actor="bob", now=later, resolution="again")


def test_bad_times_and_empty_inputs_name_the_field() -> None:
    opened = _open()
    with pytest.raises(InputError, match=r"--at: .* before the incident was opened"):
        model.acknowledge(opened, actor="bob", now=T0 - timedelta(seconds=1))
    with pytest.raises(InputError, match="expected --note and/or --disclosure"):
        model.update(opened, actor="bob", now=T0, note=None, disclosure={})
    with pytest.raises(InputError, match=r"--disclosure fix: .* after --at"):
        model.update(opened, actor="bob", now=T0, note=None, disclosure={DisclosureField.FIX: T0 + timedelta(1)})
    with pytest.raises(InputError, match=r"--disclosure triage: .* before the incident was opened"):
        model.update(opened, actor="bob", now=T0, note=None,
                     disclosure={DisclosureField.TRIAGE: T0 - timedelta(days=1)})
    acked = model.acknowledge(opened, actor="bob", now=T0 + timedelta(hours=2))
    assert acked is not None
    with pytest.raises(InputError, match="--resolution"):
        model.close(acked, actor="bob", now=T0 + timedelta(hours=3), resolution="  ")
    with pytest.raises(InputError, match="before the acknowledgement"):
        model.close(acked, actor="bob", now=T0 + timedelta(hours=1), resolution="done")


def test_a_record_whose_state_disagrees_with_its_fields_is_invalid() -> None:
    doc = _open().document()
    with pytest.raises(ValueError, match="state acknowledged"):
        IncidentRecord.model_validate({**doc, "state": "acknowledged"})
    with pytest.raises(ValueError, match="summary"):
        IncidentRecord.model_validate({**doc, "summary": "two\nlines"})


def test_links_and_disclosure_parsing() -> None:
    links = parse_links(["cve=CVE-2026-1234", "package=" + DIGEST, "channel=stable", "advisory=RW-2026-001",
                         "cve=CVE-2026-1234"])
    assert links.cves == ("CVE-2026-1234",) and links.packages == (DIGEST,) and links.channels == ("stable",)
    for bad, message in [("cve", "expected KIND=VALUE"), ("host=x", "kind must be one of"),
                         ("cve=CVE-26", "cve: expected CVE-YYYY-NNNN"),
                         ("package=sha1:ab", "package: expected sha256")]:
        with pytest.raises(InputError, match=message):
            parse_links([bad])
    dates = parse_disclosure(["fix=2026-12-02", "triage=2026-12-01T10:00:00+01:00"])
    assert dates[DisclosureField.FIX].isoformat() == "2026-12-02T00:00:00+00:00"
    assert dates[DisclosureField.TRIAGE].isoformat() == "2026-12-01T09:00:00+00:00"
    for bad, message in [("fix", "expected FIELD=DATE"), ("patch=2026-12-01", "field must be one of"),
                         ("fix=tomorrow", "fix: expected YYYY-MM-DD"), ("fix=2026-12-01T10:00:00", "UTC offset")]:
        with pytest.raises(InputError, match=message):
            parse_disclosure([bad])
    with pytest.raises(InputError, match="given twice"):
        parse_disclosure(["fix=2026-12-01", "fix=2026-12-02"])


def test_ids_are_deterministic_per_key_and_generation() -> None:
    assert incident_id("k", 1) == incident_id("k", 1)
    assert len({incident_id("k", 1), incident_id("k", 2), incident_id("j", 1)}) == 3
    key = model.default_dedup_key(type=IncidentType.SUPPLY_CHAIN, severity=IncidentSeverity.LOW, summary="x",
                                  reporter=None, links=IncidentLinks(), opened_at=T0)
    assert key == model.default_dedup_key(type=IncidentType.SUPPLY_CHAIN, severity=IncidentSeverity.LOW,
                                          summary="x", reporter=None, links=IncidentLinks(), opened_at=T0)
    assert key != model.default_dedup_key(type=IncidentType.SUPPLY_CHAIN, severity=IncidentSeverity.LOW,
                                          summary="x", reporter=None, links=IncidentLinks(),
                                          opened_at=T0 + timedelta(seconds=1))
