"""Events without an id are never silently dropped (issue 11): a reference event without an id
gets a content-addressed id; a document that is not an event is refused with exit 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ringward.core.common.jsonio import dumps_canonical
from tests.connectors.conftest import write_config


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RINGWARD_DATABASE_URL", raising=False)
    queue = tmp_path / "queue"
    queue.mkdir()
    config = write_config(tmp_path / "connectors.yaml", {"name": "inhouse", "provider": "private_queue",
                                                         "directory": str(queue)})
    return {"tmp": tmp_path, "queue": queue, "config": str(config)}


def deliver(ws: dict[str, Any], capsys: pytest.CaptureFixture[str], document: Any, name: str,
            *extra: str) -> tuple[int, str, str]:
    from ringward.cli.main import run

    path = ws["tmp"] / name
    path.write_text(json.dumps(document))
    with pytest.raises(SystemExit) as exited:
        run(["connectors", "deliver", str(path), "--config", ws["config"], *extra])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exited.value.code or 0), out.out, out.err


@pytest.mark.parametrize("document", [{}, {"foo": 1}, {"schema_version": "acme.event.v1", "event_type": "x"}],
                         ids=["empty", "no-event-fields", "foreign-schema"])
def test_not_an_event_is_bad_input(ws, capsys, document: dict[str, Any]) -> None:
    code, out, err = deliver(ws, capsys, document, "e.json")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: e.json: "), err
    assert "DELIVERED" not in out
    assert not list(ws["queue"].iterdir())


def test_id_less_reference_events_get_content_addressed_ids(ws, capsys) -> None:
    first = {"schema_version": "cavra.release.audit.v1", "event_type": "cavra.release.audit", "detail": 1}
    second = {**first, "detail": 2}
    code, out, err = deliver(ws, capsys, first, "a.json", "--json")
    assert code == 0, err
    first_id = "sha256:" + hashlib.sha256(dumps_canonical(first)).hexdigest()
    assert json.loads(out)["event_id"] == first_id
    code, out, err = deliver(ws, capsys, second, "b.json", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["event_id"] != first_id and result["event_id"].startswith("sha256:")
    assert [d["status"] for d in result["deliveries"]] == ["delivered"]  # not skipped as already-delivered
    assert len(list(ws["queue"].iterdir())) == 2
    # the same document again is the same event: delivered once
    code, out, _ = deliver(ws, capsys, first, "a-again.json", "--json")
    assert code == 0 and [d["status"] for d in json.loads(out)["deliveries"]] == ["already-delivered"]
    assert len(list(ws["queue"].iterdir())) == 2


def test_event_type_alone_is_an_event_but_never_its_id(ws, capsys) -> None:
    code, out, err = deliver(ws, capsys, {"event_type": "cavra.release.rollback"}, "t.json")
    assert code == 0, err
    assert "DELIVERED: event sha256:" in out and "event cavra.release.rollback " not in out


def test_reference_ids_still_win(ws, capsys) -> None:
    code, out, err = deliver(ws, capsys, {"schema_version": "cavra.release.audit.v1", "execution_id": "exec-7"},
                             "i.json", "--json")
    assert code == 0, err
    assert json.loads(out)["event_id"] == "exec-7"
