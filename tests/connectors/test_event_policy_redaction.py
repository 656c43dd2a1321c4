"""Pure core rules: the event model, the outcome classifier, backoff and redaction."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringward.core.common.redaction import REDACTED, SecretScrubber, is_sensitive_header, redact_headers, redact_url
from ringward.core.delivery.event import (
    CONNECTOR_EVENT_SCHEMA,
    ConnectorEvent,
    Severity,
    parse_event,
    webhook_message_id,
)
from ringward.core.delivery.policy import (
    MAX_RETRY_AFTER_SECONDS,
    DeliveryPolicy,
    Outcome,
    backoff_delay,
    classify_status,
    next_step,
    parse_retry_after,
)
from ringward.core.errors import ConnectorEventError
from tests.connectors.conftest import T0, make_event

# --- events -------------------------------------------------------------------------------------------


def test_native_event_round_trips_and_has_a_stable_digest() -> None:
    event = make_event()
    again = parse_event(json.dumps(event.to_document()).encode(), source="e.json", now=T0)
    assert again == event
    assert again.digest() == event.digest()
    assert event.to_document()["schema_version"] == CONNECTOR_EVENT_SCHEMA


def test_reference_event_is_normalised_with_the_reference_id_rule() -> None:
    reference = {
        "schema_version": "cavra.rollout-rollback.audit-event.v1",
        "event_type": "cavra.rollout_rollback_execution",
        "rollback_id": "rbk_0a1b2c",
        "request_id": "req_should_not_win",
        "severity": "critical",
        "generated_at": "2026-11-20T08:30:00Z",
        "release": {"version": "1.4.1"},
        "target_ring": "production",
        "provider_payloads": {"splunk": {"event": "verbatim"}},
    }
    event = parse_event(json.dumps(reference).encode(), source="rollback.json", now=T0)
    assert event.event_id == "rbk_0a1b2c"
    assert event.severity is Severity.CRITICAL
    assert event.created_at.isoformat() == "2026-11-20T08:30:00+00:00"
    assert (event.release_version, event.ring) == ("1.4.1", "production")
    assert event.provider_payloads == {"splunk": {"event": "verbatim"}}
    assert "provider_payloads" not in event.attributes and event.attributes["rollback_id"] == "rbk_0a1b2c"
    bare = parse_event(b'{"event_type": "cavra.x"}', source="x.json", now=T0)
    # an id-less reference event gets a content-addressed id, never its type (issue 11)
    assert bare.event_id.startswith("sha256:") and bare.event_id != "cavra.x" and bare.created_at == T0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1]", "an event must be a JSON object"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"schema_version": "other.v1"}', "is not ringward.connector.event.v1"),
        (
            json.dumps(
                {
                    "schema_version": CONNECTOR_EVENT_SCHEMA,
                    "event_id": "has space",
                    "event_type": "t",
                    "created_at": "2026-01-01T00:00:00",
                    "title": "x",
                }
            ).encode(),
            "event_id: must be 1-200 printable characters",
        ),
    ],
)
def test_bad_events_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ConnectorEventError, match=message):
        parse_event(data, source="e.json", now=T0)


def test_naive_timestamps_are_refused() -> None:
    document = make_event().to_document() | {"created_at": "2026-11-22T12:00:00"}
    with pytest.raises(ConnectorEventError, match="created_at: must carry a UTC offset"):
        parse_event(json.dumps(document).encode(), source="e.json", now=T0)


def test_webhook_ids_never_contain_dots_and_are_stable() -> None:
    assert webhook_message_id("evt_123:abc") == "evt_123:abc"
    dotted = webhook_message_id("release-1.4.2")
    assert "." not in dotted and dotted == webhook_message_id("release-1.4.2") and dotted.startswith("evt_")
    assert ConnectorEvent.model_validate(
        make_event(event_id="a.b").to_document()
    ).webhook_id == webhook_message_id("a.b")


# --- classifier and backoff ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "batch", "splittable", "outcome"),
    [
        (200, 1, False, Outcome.DELIVERED),
        (201, 1, False, Outcome.DELIVERED),
        (204, 1, False, Outcome.DELIVERED),
        (202, 1, False, Outcome.QUEUED),
        (408, 1, False, Outcome.RETRY),
        (429, 1, False, Outcome.RETRY),
        (500, 1, False, Outcome.RETRY),
        (503, 1, False, Outcome.RETRY),
        (599, 1, False, Outcome.RETRY),
        (413, 4, True, Outcome.SPLIT),
        (413, 1, True, Outcome.TOO_LARGE),
        (413, 4, False, Outcome.TOO_LARGE),
        (410, 1, False, Outcome.DISABLED),
        (400, 1, False, Outcome.REJECTED),
        (401, 1, False, Outcome.REJECTED),
        (403, 1, False, Outcome.REJECTED),
        (404, 1, False, Outcome.REJECTED),
        (302, 1, False, Outcome.REJECTED),
    ],
)
def test_one_classifier_for_every_provider(
    status: int, batch: int, splittable: bool, outcome: Outcome
) -> None:
    assert classify_status(status, batch_size=batch, splittable=splittable) is outcome


def test_retry_after_seconds_dates_garbage_and_cap() -> None:
    assert parse_retry_after("7", now=T0) == 7.0
    assert parse_retry_after("1.5", now=T0) == 1.5
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:30 GMT", now=T0) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:00:00 GMT", now=T0) == 0.0
    assert parse_retry_after("soon", now=T0) is None
    assert parse_retry_after(None, now=T0) is None
    assert parse_retry_after("-3", now=T0) is None
    assert parse_retry_after("99999999", now=T0) == MAX_RETRY_AFTER_SECONDS


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=100),
    jitter=st.floats(min_value=0, max_value=1),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=3600)),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_bounded_jittered_and_honours_retry_after(
    attempt: int, base: float, cap: float, jitter: float, retry_after: float | None, seed: int
) -> None:
    policy = DeliveryPolicy(backoff_base_seconds=base, backoff_cap_seconds=cap, jitter=jitter)
    delay = backoff_delay(attempt, policy=policy, rng=random.Random(seed), retry_after=retry_after)
    raw = min(cap, base * 2 ** (attempt - 1))
    assert raw * (1 - jitter) - 1e-9 <= delay or (retry_after is not None and delay >= retry_after)
    assert delay <= max(raw, retry_after or 0) + 1e-9
    if retry_after is not None:
        assert delay >= retry_after


def test_next_step_respects_attempts_budget_and_outcome() -> None:
    policy = DeliveryPolicy(max_attempts=3, budget_seconds=10)
    assert next_step(outcome=Outcome.RETRY, attempt=1, elapsed=0, policy=policy, delay=1)
    assert not next_step(outcome=Outcome.RETRY, attempt=3, elapsed=0, policy=policy, delay=1)
    assert not next_step(outcome=Outcome.RETRY, attempt=1, elapsed=9.5, policy=policy, delay=1)
    assert not next_step(outcome=Outcome.REJECTED, attempt=1, elapsed=0, policy=policy, delay=1)


# --- redaction -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret_url", "expected"),
    [
        (
            "https://splunk.example.com:8088/services/collector/event",
            False,
            "https://splunk.example.com:8088/services/collector/event",
        ),
        ("https://hooks.slack.com/services/T01/B02/abcdefSECRET", False, "https://hooks.slack.com/REDACTED"),
        (
            "https://relay.example.com/services/T0123ABCD/B0123ABCD/xyz",
            False,
            "https://relay.example.com/services/REDACTED",
        ),
        ("https://discord.com/api/webhooks/123/tok", False, "https://discord.com/REDACTED"),
        (
            "https://chat.example.com/api/webhooks/123/tok",
            False,
            "https://chat.example.com/api/webhooks/REDACTED",
        ),
        (
            "https://acme.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d",
            False,
            "https://acme.webhook.office.com/REDACTED",
        ),
        (
            "https://prod-1.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s",
            False,
            "https://prod-1.westus.logic.azure.com:443/REDACTED?REDACTED",
        ),
        (
            "https://default1.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/w1?sig=x",
            False,
            "https://default1.environment.api.powerplatform.com/powerautomate/REDACTED?REDACTED",
        ),
        (
            "https://user:pw@sn.example.com/api/now/table/incident?x=1#f",
            False,
            "https://REDACTED@sn.example.com/api/now/table/incident?REDACTED",
        ),
        (
            "https://relay.example.com/in/4f1d2c3b5a69788796a5b4c3d2e1f0a9",
            False,
            "https://relay.example.com/in/REDACTED",
        ),
        (
            "https://dce.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/"
            "Custom-Audit_CL?api-version=2023-01-01",
            False,
            "https://dce.monitor.azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/"
            "Custom-Audit_CL?REDACTED",
        ),
        ("https://teams.example.com/anything/at/all", True, "https://teams.example.com/REDACTED"),
        ("not a url", False, REDACTED),
    ],
)
def test_urls_are_recorded_without_secrets(url: str, secret_url: bool, expected: str) -> None:
    assert redact_url(url, whole_path_secret=secret_url) == expected


def test_authenticating_headers_of_every_provider_are_redacted() -> None:
    headers = {
        "Authorization": "Splunk t",
        "DD-API-KEY": "k",
        "x-api-key": "k",
        "api-key": "k",
        "X-Auth-Token": "t",
        "X-Splunk-Token": "t",
        "Cookie": "c",
        "webhook-signature": "v1,x",
        "X-Custom-Secret": "s",
        "Content-Type": "application/json",
        "webhook-id": "evt_1",
        "Idempotency-Key": "evt_1",
        "x-splunk-request-channel": "c",
    }
    redacted = redact_headers(headers)
    assert {k for k, v in redacted.items() if v == REDACTED} == {
        "authorization",
        "dd-api-key",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-splunk-token",
        "cookie",
        "webhook-signature",
        "x-custom-secret",
    }
    assert redacted["content-type"] == "application/json" and redacted["idempotency-key"] == "evt_1"
    assert not is_sensitive_header("x-splunk-request-channel")


def test_scrubber_removes_secrets_and_their_encodings_everywhere() -> None:
    scrubber = SecretScrubber(["p@ss/word+1", "ab"])
    scrubber.add_url("https://hooks.slack.com/services/T0AAAA/B0BBBB/SecretTokenPart123")
    value = {
        "error": "auth failed for p@ss/word+1 and p%40ss%2Fword%2B1",
        "p@ss/word+1": ["x SecretTokenPart123 y"],
        "ok": "ab is too short to scrub",
        "n": 3,
    }
    scrubbed = scrubber.scrub_value(value)
    text = json.dumps(scrubbed)
    assert "p@ss" not in text and "p%40ss" not in text and "SecretTokenPart123" not in text
    assert scrubbed["ok"] == "ab is too short to scrub" and scrubbed["n"] == 3
    assert scrubber.found_in("xx p@ss/word+1") and not scrubber.found_in("clean")


_SECRET_ALPHABET = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~.")


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(_SECRET_ALPHABET, min_size=8, max_size=64),
    before=st.text(" .x;:/", max_size=400),
    after=st.text(" .y;:/", max_size=200),
    limit=st.integers(min_value=20, max_value=300),
    precut=st.integers(min_value=0, max_value=600),
)
def test_excerpts_never_carry_a_piece_of_a_secret(
    secret: str, before: str, after: str, limit: int, precut: int
) -> None:
    """Wherever the cut falls, even when someone cut the text before the scrubber saw it, no piece of
    8 or more characters of a registered secret is left in an excerpt; it stays within ``limit``."""
    from ringward.core.common.redaction import FRAGMENT_MIN_LENGTH, excerpt

    scrubber = SecretScrubber([secret])
    pieces = {secret[i : i + FRAGMENT_MIN_LENGTH] for i in range(len(secret) - FRAGMENT_MIN_LENGTH + 1)}
    text = before + secret + after
    for cut in (text, text[:precut]):
        shown = excerpt(cut, limit=limit, scrubber=scrubber)
        assert len(shown) <= limit
        assert not [p for p in pieces if p in shown], shown


def test_timestamps_in_deltas_do_not_leak_naive_values() -> None:
    assert (make_event().created_at - T0) == timedelta(0)
