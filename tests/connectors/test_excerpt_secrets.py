"""Issue 13, defect 2: a receiver that answers 500 and echoes a credential must not leave any piece
of it in what Ringward stores or prints, wherever the credential falls relative to the point where
the quoted answer is cut.

A real loopback receiver echoes the credential so that it starts at every offset from 150 to 260
characters into its body (straddling the ~200-character excerpt every error quotes). Four forms:
the Splunk ``Authorization: Splunk <token>`` header, the ``?token=`` query of a secret URL, a bearer
token and a webhook signing secret. One in-process ``ringward connectors deliver --json`` per form
delivers to one destination per offset; then no 8-character piece of the credential may appear in
the deliver output, ``connectors history`` (JSON and table), any row of any table of the store
(delivery log, events, evidence) or any file under ``RINGWARD_HOME`` (the store itself and the
``evidence export`` of the records included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa

from tests.connectors.conftest import make_event, write_config
from tests.connectors.fault_server import FaultServer

OFFSETS = range(150, 261)
FRAGMENT = 8

SPLUNK_TOKEN = "splunk-hec-3f9a7c1e-5b2d-4e8f-9a0b-1c2d3e4f5a6b"
QUERY_TOKEN = "qtok7Hc2Lp9Xw4Rz8Nv3Bq6Ty1Ms5Kd0"
BEARER_TOKEN = "linux-fleet-bearer-eee555fff666ggg777"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

#: what precedes the echoed value (the filler before it is sized so the value starts at the offset)
_FILLER = "receiver failed while handling the request; diagnostic dump follows; "


class EchoServer(FaultServer):
    """``/echo/<form>/<offset>``: 500 with a body quoting the credential at character ``offset``.

    Forms: ``authorization`` (the request's Authorization header, value after the scheme at the
    offset), ``query`` (the ``token`` query parameter), ``static`` (a value the receiver knows, as a
    misconfigured receiver sharing the webhook secret would).
    """

    static = WEBHOOK_SECRET

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        _, _, form, offset = scope["path"].split("/", 3)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if form == "authorization":
            scheme, _, value = headers.get("authorization", "").partition(" ")
            prefix = f"Authorization: {scheme} "
        elif form == "query":
            value = dict(parse_qsl(scope.get("query_string", b"").decode())).get("token", "")
            prefix = f"{scope['method']} /echo?token="
        else:
            value, prefix = self.static, "configured secret: "
        start = int(offset) - len(prefix)
        filler = (_FILLER * (start // len(_FILLER) + 1))[:start]
        body = f"{filler}{prefix}{value} (end of dump; request id 42, retry later)".encode()
        assert body.decode().index(value) == int(offset)
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    server.start()
    yield server
    server.stop()


def _pieces(secret: str) -> set[str]:
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def _leaks(text: str, secret: str) -> list[str]:
    return sorted(p for p in _pieces(secret) if p in text)


def _destinations(form: str, server: EchoServer, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], str]:
    """One destination per offset for ``form``, and the credential it echoes."""
    destinations: list[dict[str, Any]] = []
    for offset in OFFSETS:
        name = f"{form}-{offset}"
        if form == "splunk":
            monkeypatch.setenv("RW_ECHO_SPLUNK", SPLUNK_TOKEN)
            dest = {
                "name": name,
                "provider": "splunk",
                "url": server.url(f"/echo/authorization/{offset}"),
                "token": "env:RW_ECHO_SPLUNK",
            }
        elif form == "query":
            variable = f"RW_ECHO_URL_{offset}"
            monkeypatch.setenv(variable, server.url(f"/echo/query/{offset}?token={QUERY_TOKEN}"))
            dest = {"name": name, "provider": "linux", "url": f"env:{variable}"}
        elif form == "bearer":
            monkeypatch.setenv("RW_ECHO_BEARER", BEARER_TOKEN)
            dest = {
                "name": name,
                "provider": "linux",
                "url": server.url(f"/echo/authorization/{offset}"),
                "token": "env:RW_ECHO_BEARER",
            }
        else:
            monkeypatch.setenv("RW_ECHO_WEBHOOK", WEBHOOK_SECRET)
            dest = {
                "name": name,
                "provider": "webhook",
                "url": server.url(f"/echo/static/{offset}"),
                "signing_secret": "env:RW_ECHO_WEBHOOK",
            }
        destinations.append(dest)
    secret = {"splunk": SPLUNK_TOKEN, "query": QUERY_TOKEN, "bearer": BEARER_TOKEN, "webhook": WEBHOOK_SECRET}[form]
    return destinations, secret


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from ringward.cli.main import run

    with pytest.raises(SystemExit) as exited:
        run(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out + captured.err


def _stored_text(home: Path) -> dict[str, str]:
    """Every row of every table of the store, and every file under ``home``, as text."""
    from ringward.store import open_store

    found: dict[str, str] = {}
    with open_store() as store, store.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).fetchall()
            found[f"table {table}"] = "\n".join(" ".join(str(v) for v in row) for row in rows)
    for path in sorted(home.rglob("*")):
        if path.is_file():
            found[f"file {path.relative_to(home)}"] = path.read_bytes().decode("utf-8", "replace")
    return found


@pytest.mark.parametrize("form", ["splunk", "query", "bearer", "webhook"])
def test_no_piece_of_an_echoed_secret_survives_at_any_offset(
    form: str,
    echo_server: EchoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.delenv("RINGWARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("RINGWARD_EVIDENCE_ROOT", raising=False)
    destinations, secret = _destinations(form, echo_server, monkeypatch)
    config = write_config(tmp_path / "connectors.yaml", *destinations, max_attempts=1)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(make_event().to_document()))

    started = time.monotonic()
    code, delivered = _cli(["connectors", "deliver", str(event), "--config", str(config), "--json"], capsys)
    assert code == 1, delivered
    result = json.loads(delivered)
    deliveries = {d["destination"]: d for d in result["deliveries"]}
    assert set(deliveries) == {d["name"] for d in destinations}
    for name, delivery in deliveries.items():
        # every destination really got the 500 and quotes (a scrubbed excerpt of) the answer
        assert delivery["status_code"] == 500 and "receiver failed" in (delivery["error"] or ""), (name, delivery)
    assert time.monotonic() - started < 60

    outputs = {"connectors deliver --json": delivered}
    code, outputs["connectors history --json"] = _cli(
        ["connectors", "history", "--json", "--limit", "500"], capsys
    )
    assert code == 0 and len(json.loads(outputs["connectors history --json"])["items"]) == len(OFFSETS)
    code, outputs["connectors history"] = _cli(["connectors", "history", "--limit", "500"], capsys)
    assert code == 0
    exported = home / "export" / "metadata.json"
    exported.parent.mkdir(parents=True)
    code, outputs["evidence export"] = _cli(["evidence", "export", str(exported), "--json"], capsys)
    assert code == 0 and exported.is_file()
    outputs.update(_stored_text(home))
    assert "file export/metadata.json" in outputs
    assert any(name.startswith("table evidence") for name in outputs)

    leaks = {where: _leaks(text, secret) for where, text in outputs.items()}
    assert not {where: pieces for where, pieces in leaks.items() if pieces}, secret


def test_the_excerpt_is_scrubbed_before_it_is_cut() -> None:
    """The core rule on its own: a secret straddling the cut, and a piece of one left by someone
    else's cut, are both gone from the excerpt; harmless text around them stays."""
    from ringward.core.common.redaction import REDACTED, SecretScrubber, excerpt

    scrubber = SecretScrubber([SPLUNK_TOKEN])
    for offset in OFFSETS:
        text = "x" * offset + SPLUNK_TOKEN + " tail"
        shown = excerpt(text, limit=200, scrubber=scrubber)
        assert len(shown) <= 200 and not _leaks(shown, SPLUNK_TOKEN), (offset, shown)
        assert shown.startswith("x" * min(offset, 150))
    assert excerpt("a " + SPLUNK_TOKEN[:20], limit=200, scrubber=scrubber) == f"a {REDACTED}"
    assert excerpt("a " + SPLUNK_TOKEN[-9:] + " b", limit=200, scrubber=scrubber) == f"a {REDACTED} b"
    # fewer than 8 characters of a secret are not masked (they no longer identify it)
    assert excerpt("splunk-", limit=200, scrubber=scrubber) == "splunk-"
    # a URL that is a secret: its random parts are masked piecemeal, never its scheme and host
    url_scrubber = SecretScrubber()
    url_scrubber.add(f"http://127.0.0.1:8080/hook?token={QUERY_TOKEN}&api-version=2023-01-01")
    shown = excerpt(f"see http://127.0.0.1:8080/status {QUERY_TOKEN[:12]}… 2023-01-01", scrubber=url_scrubber)
    assert shown == f"see http://127.0.0.1:8080/status {REDACTED}… 2023-01-01"
