"""deliver-event and redeliver-failed take the connector configuration from the settings of the process
running them when the deployment leaves the parameter out (as prefect.yaml does), and say what is
missing in one line when there is none."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from flows._common import connectors_config
from flows.deliver_event import deliver_event_flow
from flows.redeliver_failed import redeliver_failed_flow
from ringward.core.errors import InputError


def test_the_parameter_wins_then_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = tmp_path / "connectors.yaml"
    configured.write_text("destinations: []\n")
    monkeypatch.setenv("RINGWARD_CONNECTORS", str(configured))
    assert connectors_config("/elsewhere/connectors.yaml") == "/elsewhere/connectors.yaml"
    assert connectors_config(None) == str(configured)


def test_home_file_is_used_and_absence_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGWARD_CONNECTORS", raising=False)
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    with pytest.raises(InputError, match=r"^config_path: required \(a parameter, or .*connectors.yaml") as caught:
        connectors_config(None)
    assert "\n" not in str(caught.value)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "connectors.yaml").write_text("destinations: []\n")
    assert connectors_config("") == str(tmp_path / "home" / "connectors.yaml")


@pytest.mark.parametrize("flow", [deliver_event_flow, redeliver_failed_flow])
def test_the_flows_do_not_require_the_parameter(flow: object) -> None:
    parameter = inspect.signature(flow.fn).parameters["config_path"]  # type: ignore[attr-defined]
    assert parameter.default is None
