"""The last line of defence: a secret learnt late in a run (a token fetched after another
destination's error was recorded) is still scrubbed from every string of the evidence record."""

from __future__ import annotations

from ringward.core.common.redaction import SecretScrubber
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import AttemptRecord, DeliveryStatus, DestinationResult, RequestSummary
from ringward.operations.delivery.delivery_ops import evidence_draft
from tests.connectors.conftest import T0, make_event

LATE_TOKEN = "late-bearer-token-7f3a9c2e5b1d"


def _result(text: str) -> DestinationResult:
    return DestinationResult(
        event_id="evt-1",
        provider="linux",
        destination="fleet",
        status=DeliveryStatus.REJECTED,
        status_code=400,
        attempts=(
            AttemptRecord(
                number=1,
                started_at=T0,
                completed_at=T0,
                outcome=Outcome.REJECTED,
                status_code=400,
                error=f"HTTP 400: echo {text}",
                calls=(f"create: POST https://fleet.example/x?t={text} -> 400",),
            ),
        ),
        started_at=T0,
        completed_at=T0,
        error=f"HTTP 400: echo {text}",
        request=RequestSummary(method="POST", url=f"https://fleet.example/{text}", headers={"x-echo": text}),
        external_ref=text,
    )


def test_late_secret_is_scrubbed_from_every_delivery_string() -> None:
    scrubber = SecretScrubber()
    scrubber.add(LATE_TOKEN)
    draft = evidence_draft(
        make_event("evt-1"),
        [_result(LATE_TOKEN)],
        run_id="r",
        generated_at=T0,
        scrubber=scrubber,
        actor="a",
        flow_run_id=None,
        source="test",
    )
    encoded = draft.payload_bytes().decode("utf-8")
    assert LATE_TOKEN not in encoded
    (delivery,) = draft.payload["delivery"]["deliveries"]
    assert delivery["error"].startswith("HTTP 400: echo ") and delivery["attempts"][0]["calls"][0].startswith("create:")


def test_clean_records_are_left_as_built() -> None:
    scrubber = SecretScrubber()
    scrubber.add(LATE_TOKEN)
    draft = evidence_draft(
        make_event("evt-1"),
        [_result("nothing-secret")],
        run_id="r",
        generated_at=T0,
        scrubber=scrubber,
        actor="a",
        flow_run_id=None,
        source="test",
    )
    (delivery,) = draft.payload["delivery"]["deliveries"]
    assert delivery["external_ref"] == "nothing-secret" and "nothing-secret" in delivery["request"]["headers"]["x-echo"]


def test_a_secret_outside_the_delivery_strings_is_scrubbed_too() -> None:
    scrubber = SecretScrubber()
    scrubber.add(LATE_TOKEN)
    event = make_event("evt-1", session_id=f"sess-{LATE_TOKEN}")  # an event field echoing a credential
    draft = evidence_draft(
        event, [_result("nothing-secret")], run_id="r", generated_at=T0, scrubber=scrubber,
        actor="a", flow_run_id=None, source="test",
    )
    assert LATE_TOKEN not in draft.payload_bytes().decode("utf-8")
