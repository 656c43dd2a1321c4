"""connectors.yaml as a user writes it: relative paths mean the file's own directory, errors name the file,
and every schema problem is reported (not only the first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringward.cli.main import run
from ringward.core.errors import ConnectorConfigError
from ringward.operations.delivery.delivery_ops import load_connector_config

CONFIG = """\
schema_version: ringward.connectors.v1
providers:
  - name: queue
    provider: private_queue
    directory: {directory}
  - name: jamf-prod
    provider: jamf
    url: https://jamf.example.com
    client_id: ringward
    client_secret: env:RW_JAMF_SECRET
    artifact_root: {artifact_root}
"""


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        run(argv)
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc" / "ringward"
    conf_dir.mkdir(parents=True)
    config = conf_dir / "connectors.yaml"
    config.write_text(CONFIG.format(directory="spool/queue", artifact_root="../exports"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_connector_config(Path("..") / "etc" / "ringward" / "connectors.yaml")
    queue, jamf = loaded.destination("queue"), loaded.destination("jamf-prod")
    assert queue.directory is not None and jamf.artifact_root is not None
    assert Path(queue.directory).resolve() == conf_dir / "spool" / "queue"
    assert Path(jamf.artifact_root).resolve() == tmp_path / "etc" / "exports"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.format(directory="/var/spool/rw", artifact_root="/srv/exports"))
    loaded = load_connector_config(config)
    assert loaded.destination("queue").directory == "/var/spool/rw"
    assert loaded.destination("jamf-prod").artifact_root == "/srv/exports"


def test_yaml_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text("providers: [\n  - name: a\n")
    with pytest.raises(ConnectorConfigError) as info:
        load_connector_config(config)
    assert str(config) in info.value.message and "<unicode string>" not in info.value.message
    code, err = _cli(["connectors", "deliver", str(config), "--config", str(config)], capsys)
    assert code == 2 and "<unicode string>" not in err


def test_an_empty_config_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text("")
    code, err = _cli(["connectors", "validate", "--config", str(config)], capsys)
    assert code == 2
    assert err.splitlines() == [f"error: {config}: empty file; expected a connector config (schema_version, "
                                "providers)"]


def test_every_schema_problem_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text("providers:\n"
                      "  - {name: a, provider: webhook, url: 'http://a.example.com/in', signing_secret: 'env:A'}\n"
                      "  - {name: b, provider: nope, url: 'https://b.example.com'}\n"
                      "  - {name: c, provider: splunk, url: 'https://c.example.com', token: inline}\n")
    event = tmp_path / "event.json"
    event.write_text("{}\n")
    code, err = _cli(["connectors", "test", "--provider", "all", "--config", str(config)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {config}: 3 problems: ")
    for fragment in ("providers[0].url", "providers[1].provider", "providers[2].token"):
        assert fragment in lines[0], err
