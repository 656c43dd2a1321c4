"""Scheduled pulls when things go wrong: 429 then success, retries exhausted, 401 / 403 as one-line
configuration errors, a revoked token, a nextLink that leaves Graph, answers of the wrong shape,
unusable sources and options -- and no secret in any record, file, log line or output."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.inventory_pull import NoPullSourceError
from ringward.core.errors import ConfigError, InputError, SecretReferenceError, TransportError
from ringward.operations.inventory.pull_ops import KIND_PULL
from ringward.operations.inventory.pull_state import PULL_NAMESPACE, pull_root
from tests.inventory.conftest import cli, iso, records
from tests.inventory.pull_emulators import (  # noqa: F401
    JAMF_CLIENT,
    SECRETS,
    SOURCES,
    T0,
    FleetEmulator,
    PullLab,
    lab,
)

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ROUTE = {"jamf": "inventory", "intune": "devices", "fleet": "hosts"}


def test_429_then_success_honours_retry_after(lab: PullLab) -> None:  # noqa: F811
    for provider in ("jamf", "intune", "fleet"):
        lab.seed(provider, 6)
        lab.emulator(provider).fail(ROUTE[provider], 429, headers={"Retry-After": "2"})
    lab.graph.fail("token", 503)  # the token endpoint is retried like any call
    lab.fleet.fail("hosts", 502)
    for provider in ("jamf", "intune", "fleet"):
        lab.sleeps.clear()
        result = lab.pull(provider, at=T0)
        assert result["host_count"] == 6 and result["ingestion"]["status"] == "ingested"
        assert max(lab.sleeps) >= 2  # Retry-After is a floor under the backoff
        assert result["waits"] == [round(s, 3) for s in lab.sleeps][-len(result["waits"]):]
        statuses = [r.status for r in lab.emulator(provider).of(ROUTE[provider])]
        assert statuses[0] == 429 and statuses[-1] == 200
    assert [r.status for r in lab.graph.of("token")] == [503, 200]


def test_retries_exhausted_or_a_long_retry_after_end_the_pull_recorded(lab: PullLab) -> None:  # noqa: F811
    lab.seed("fleet", 6)
    lab.fleet.fail("hosts", 503, times=3)
    with pytest.raises(TransportError, match=r"fleet source fleetdm: hosts page 0: HTTP 503 after 3 attempts"):
        lab.pull("fleet", at=T0)
    lab.fleet.fail("hosts", 429, headers={"Retry-After": "3600"})
    with pytest.raises(TransportError, match="asks to retry after 3600 s"):
        lab.pull("fleet", at=T0)
    failed = records(lab.store, KIND_PULL)
    assert [r.payload["status"] for r in failed] == ["failed", "failed"]
    assert failed[0].payload["error"]["code"] == "transport-failed"
    assert lab.store.state.get(PULL_NAMESPACE, "fleet/fleetdm") is None  # no cursor from a failed pull
    assert not any((pull_root() / "spool").iterdir())  # nothing left in the spool
    assert lab.pull("fleet", at=T0)["host_count"] == 6  # the next run simply works


def test_failure_after_some_pages_keeps_them_as_evidence(lab: PullLab) -> None:  # noqa: F811
    from ringward.operations.inventory import pull_ops

    lab.seed("jamf", 12)
    plan = pull_ops.plan_pull(lab.store, config_path=lab.config, provider="jamf", now=T0, actor="bot",
                              software=("rt",), page_size=5, batch_pages=1, hooks=lab.hooks())
    batch = pull_ops.fetch_batch(lab.store, plan, plan.start, now=T0, hooks=lab.hooks())
    assert batch["next"] == {"index": 1, "hosts": 5, "at": {"page": 1}}
    lab.jamf.fail("inventory", 400, body={"httpStatus": 400, "errors": [{"code": "INVALID_FIELD"}]})
    with pytest.raises(ConfigError, match=r"computers-inventory page 1: HTTP 400 .*INVALID_FIELD"):
        pull_ops.fetch_batch(lab.store, plan, batch["next"], now=T0, hooks=lab.hooks())
    (failed,) = records(lab.store, KIND_PULL)
    assert failed.payload["status"] == "failed" and failed.payload["pages_kept"] == 1
    assert not Path(plan.spool).exists()


@pytest.mark.parametrize("provider,variable,needle", [
    ("jamf", "RW_PULL_JAMF_SECRET", "token request refused"),
    ("intune", "RW_PULL_INTUNE_SECRET", "AADSTS7000215"),
    ("fleet", "RW_PULL_FLEET_TOKEN", "HTTP 401 Unauthorized"),
])
def test_401_is_one_line_exit_2(lab: PullLab, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                monkeypatch: pytest.MonkeyPatch, provider: str, variable: str, needle: str) -> None:
    lab.seed(provider, 3)
    wrong = "wrong-credential-4242aa"
    monkeypatch.setenv(variable, wrong)
    code, out, err = cli(capsys, "inventory", "pull", "--provider", provider, "--config", str(lab.config),
                         "--software", "rt")
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert wrong not in err and "Traceback" not in err
    assert lab.store.state.get(PULL_NAMESPACE, f"{provider}/{SOURCES[provider]}") is None


def test_a_token_endpoint_echoing_the_secret_and_403(lab: PullLab, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "echoed-secret-value-9f8e7d"
    monkeypatch.setenv("RW_PULL_JAMF_SECRET", wrong)
    lab.jamf.fail("token", 401, body={"error": "invalid_client", "error_description": f"client secret {wrong} "
                                                                                     "does not match"})
    code, _, err = cli(capsys, "inventory", "pull", "--provider", "jamf", "--config", str(lab.config))
    assert code == 2 and wrong not in err and "REDACTED" in err, err
    monkeypatch.setenv("RW_PULL_JAMF_SECRET", SECRETS["RW_PULL_JAMF_SECRET"])
    lab.jamf.fail("inventory", 403, body={"httpStatus": 403, "errors": [{"code": "FORBIDDEN",
                                                                         "description": "Read Computers"}]})
    code, _, err = cli(capsys, "inventory", "pull", "--provider", "jamf", "--config", str(lab.config))
    assert code == 2 and "HTTP 403 Forbidden" in err and "privilege" in err and "Read Computers" in err, err


def test_a_revoked_cached_token_is_replaced_once(lab: PullLab, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import connectors.auth

    monkeypatch.setattr(connectors.auth, "FRESH_TOKEN_S", 0.0)
    lab.seed("jamf", 3)
    lab.pull("jamf", at=T0)
    lab.jamf.issued.clear()  # revoked in Jamf before its stated expiry
    lab.jamf.token = "jamf-access-token-rotated-77"
    assert lab.pull("jamf", at=T0 + timedelta(hours=1))["mode"] == "incremental"
    assert [r.status for r in lab.jamf.of("token")] == [200, 200]
    lab.jamf.issued.clear()  # refused again at once: a permission problem, final
    lab.jamf.token = "jamf-access-token-rotated-78"
    with pytest.raises(ConfigError, match="HTTP 401 Unauthorized"):
        lab.pull("jamf", at=T0 + timedelta(hours=2))


def test_jamf_user_token_exchange(lab: PullLab) -> None:  # noqa: F811
    lab.seed("jamf", 4)
    assert lab.pull("jamf", at=T0, config=lab.basic_config())["host_count"] == 4
    assert lab.jamf.of("auth-token")[0].headers["authorization"].startswith("Basic ")
    assert not lab.jamf.of("token")


def test_next_link_leaving_graph_is_refused(lab: PullLab) -> None:  # noqa: F811
    foreign = FleetEmulator(api_token="x")
    try:
        lab.seed("intune", 8)
        lab.graph.next_link_origin = foreign.url
        with pytest.raises(TransportError, match="nextLink leaves the configured Graph API"):
            lab.pull("intune", at=T0)
        assert foreign.requests == []  # the token never went there
        lab.graph.next_link_origin = None
        lab.graph.fail("devices", 200, body={"value": [], "@odata.nextLink": "https://graph.microsoft.com.evil/x"})
        with pytest.raises(TransportError, match="nextLink leaves"):
            lab.pull("intune", at=T0)
    finally:
        foreign.close()


def test_a_device_gone_between_list_and_detail_is_left_out(lab: PullLab) -> None:  # noqa: F811
    lab.seed("intune", 4)
    lab.graph.fail("device", 404, body={"error": {"code": "ResourceNotFound", "message": "gone"}})
    result = lab.pull("intune", at=T0)
    assert result["host_count"] == 3 and any("was removed before its detected apps" in w for w in result["warnings"])


@pytest.mark.parametrize("body,message", [
    (b"<html>Jamf is starting</html>", "mdm-jamf: computers-inventory page 0"),
    ({"totalCount": 1, "results": "none"}, "expected a list under 'results'"),
    ({"totalCount": 1, "results": [1]}, r"results\[0\]: expected an object"),
    ({"totalCount": 1, "results": [{"udid": "x", "general": {}}]}, "record 0 has no id"),
])
def test_answers_of_the_wrong_shape(lab: PullLab, body: object, message: str) -> None:  # noqa: F811
    lab.seed("jamf", 2)
    lab.jamf.fail("inventory", 200, body=body)
    with pytest.raises(TransportError, match=message):
        lab.pull("jamf", at=T0)


def test_unusable_sources_and_options(lab: PullLab, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    no_fleet = lab.work / "no-fleet.yaml"
    no_fleet.write_text(lab.config.read_text().replace("provider: linux", "provider: webhook\n"
                                                       "    signing_secret: env:RW_PULL_FLEET_TOKEN"))
    with pytest.raises(NoPullSourceError, match="no fleet pull source"):
        lab.pull("fleet", at=T0, config=no_fleet)
    relay = f"  - name: mdm-jamf\n    provider: jamf\n    mode: relay\n    url: {lab.jamf.url}\n"
    with pytest.raises(NoPullSourceError, match="no jamf pull source"):
        lab.pull("jamf", at=T0, config=lab.write_config(name="relay.yaml", jamf=relay))
    two = lab.write_config(name="two.yaml", extra=f"  - name: mdm-jamf-2\n    provider: jamf\n    url: {lab.jamf.url}\n"
                                                  f"    client_id: {JAMF_CLIENT}\n"
                                                  "    client_secret: env:RW_PULL_JAMF_SECRET\n")
    with pytest.raises(ConfigError, match="choose one with --source NAME"):
        lab.pull("jamf", at=T0, config=two)
    with pytest.raises(ConfigError, match="--source nope: not an enabled jamf destination"):
        lab.pull("jamf", at=T0, config=two, source="nope")
    lab.seed("jamf", 2)
    assert lab.pull("jamf", at=T0, config=two, source="mdm-jamf-2")["source"] == "mdm-jamf-2"
    no_credentials = f"  - name: mdm-jamf\n    provider: jamf\n    url: {lab.jamf.url}\n"
    with pytest.raises(ConfigError, match="needs client_id"):
        lab.pull("jamf", at=T0, config=lab.write_config(name="bare.yaml", jamf=no_credentials))
    monkeypatch.delenv("RW_PULL_FLEET_TOKEN")
    with pytest.raises(SecretReferenceError, match="RW_PULL_FLEET_TOKEN"):
        lab.pull("fleet", at=T0)
    with pytest.raises(InputError, match=r"--page-size: expected 1\.\.2000"):
        lab.pull("jamf", at=T0, page_size=5000)
    lab.seed("intune", 4)
    with pytest.raises(InputError, match="more than 3 hosts"):
        lab.pull("intune", at=T0, max_hosts=3, page_size=2)
    for argv, needle in ((["--provider", "sccm"], "--provider"), (["--provider", "jamf", "--channel", "BAD"],
                                                                   "--channel"),
                         (["--provider", "jamf", "--full-every", "soon"], "--full-every")):
        code, _, err = cli(capsys, "inventory", "pull", "--config", str(lab.config), *argv)
        assert code == 2 and needle in err and err.count("\n") == 1, (argv, err)
    code, _, err = cli(capsys, "inventory", "pull", "--provider", "jamf", "--config", str(lab.work / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err


def test_secrets_never_in_evidence_files_logs_or_output(lab: PullLab, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    basic = lab.basic_config()
    outputs = []
    for provider in ("jamf", "intune", "fleet"):
        lab.seed(provider, 6)
        code, out, err = cli(capsys, "inventory", "pull", "--provider", provider, "--config", str(lab.config),
                             "--software", "rt", "--page-size", "4", "--json", "--at", iso(T0))
        assert code == 0, err
        outputs += [out, err]
        assert json.loads(out)["host_count"] == 6
    lab.jamf.issued.clear()
    code, out, err = cli(capsys, "inventory", "pull", "--provider", "jamf", "--config", str(basic), "--software", "rt",
                         "--full", "--at", iso(T0 + timedelta(hours=1)))
    assert code == 0, err
    outputs += [out, err]
    lab.fleet.fail("hosts", 400, body={"message": f"bad request near {SECRETS['RW_PULL_FLEET_TOKEN']}"})
    code, out, err = cli(capsys, "inventory", "pull", "--provider", "fleet", "--config", str(lab.config), "--full")
    outputs += [out, err]
    assert code == 2 and "REDACTED" in err, err
    texts = {"output": "\n".join(outputs), "logs": caplog.text}
    for path in Path(lab.store.engine.url.database or "").parent.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    from ringward.settings import ringward_home

    for path in ringward_home().rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    assert len(texts) > 20
    for secret in lab.secrets():
        for where, text in texts.items():
            assert secret not in text, (secret, where)


def test_network_errors_are_retried_and_retry_after_forms(lab: PullLab) -> None:  # noqa: F811
    from connectors.inventory_pull.http import retry_after_seconds

    lab.fleet.close()  # nothing listens there any more: refused connections
    with pytest.raises(TransportError, match=r"hosts page 0: connection failed \(ConnectError\) after 3 attempts"):
        lab.pull("fleet", at=T0)
    assert len(lab.sleeps) == 2
    assert retry_after_seconds("7", T0) == 7
    assert retry_after_seconds("Sun, 22 Nov 2026 12:00:30 GMT", T0) == 30
    assert retry_after_seconds("Sun, 22 Nov 2026 11:00:00 GMT", T0) == 0
    assert retry_after_seconds("soon", T0) is None and retry_after_seconds("-3", T0) is None
