"""`ringward trust`: one spelling for keys and thresholds (ROLE=VALUE, as `trust init`), old spellings as
aliases, and key status changes naming the key by the public key file the user holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringward.cli.main import run


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run(list(argv))
    code = exited.value.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in ("rel", "second", "promo"):
        code, _, err = cli(capsys, "keys", "generate", "--private-key", str(tmp_path / f"{name}.pem"),
                           "--public-key", str(tmp_path / f"{name}.pub"))
        assert code == 0, err
        found[name] = tmp_path / f"{name}.pub"
    trust = tmp_path / "trust.json"
    code, _, err = cli(capsys, "trust", "init", "--output", str(trust), "--key", f"release={found['rel']}")
    assert code == 0, err
    found["trust"] = trust
    return found


def shown(capsys: pytest.CaptureFixture[str], trust: Path) -> dict:  # type: ignore[type-arg]
    code, out, err = cli(capsys, "trust", "show", "--trust-root", str(trust), "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def roles_and_status(doc: dict) -> dict[str, tuple[list[str], str]]:  # type: ignore[type-arg]
    return {k["label"]: (sorted(k["roles"]), k["status"]) for k in doc["keys"]}


def test_add_key_takes_role_equals_key_like_init(keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    trust = keys["trust"]
    before = shown(capsys, trust)["version"]
    code, _, err = cli(capsys, "trust", "add-key", "--trust-root", str(trust), "--key", f"release={keys['second']}",
                       "--key", f"promotion={keys['promo']}", "--key", f"advisory={keys['promo']}")
    assert code == 0, err
    doc = shown(capsys, trust)
    assert doc["version"] == before + 1
    found = {k["key_id"][:8]: sorted(k["roles"]) for k in doc["keys"]}
    assert sorted(found.values()) == [["advisory", "promotion"], ["release"], ["release"]]


def test_old_add_key_spelling_still_works(keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "trust", "add-key", "--trust-root", str(keys["trust"]), "--role", "promotion",
                       "--public-key", str(keys["promo"]), "--label", "promo")
    assert code == 0, err
    assert roles_and_status(shown(capsys, keys["trust"]))["promo"] == (["promotion"], "active")


@pytest.mark.parametrize(("argv", "needle"), [
    (["--role", "promotion"], "--role: needs --public-key"),
    (["--public-key", "PROMO"], "--public-key: needs --role"),
    ([], "--key: expected ROLE=PUBLIC_KEY"),
    (["--key", "promotion"], "--key: expected ROLE=VALUE"),
    (["--key", "nobody=PROMO"], "role 'nobody'"),
])
def test_add_key_bad_spellings_are_bad_input(argv: list[str], needle: str, keys: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("PROMO", str(keys["promo"])) for a in argv]
    code, _, err = cli(capsys, "trust", "add-key", "--trust-root", str(keys["trust"]), *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_set_threshold_takes_the_init_spelling_and_the_old_one(keys: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    trust = keys["trust"]
    assert cli(capsys, "trust", "add-key", "--trust-root", str(trust), "--key", f"release={keys['second']}")[0] == 0
    code, _, err = cli(capsys, "trust", "set-threshold", "--threshold", "release=2", "--trust-root", str(trust))
    assert code == 0, err
    assert shown(capsys, trust)["thresholds"]["release"] == 2
    code, _, err = cli(capsys, "trust", "set-threshold", "release=1", "--trust-root", str(trust))
    assert code == 0, err
    assert shown(capsys, trust)["thresholds"]["release"] == 1
    code, _, err = cli(capsys, "trust", "set-threshold", "--threshold", "release=3", "--trust-root", str(trust))
    assert code == 2 and "only 2 active" in err
    code, _, err = cli(capsys, "trust", "set-threshold", "--trust-root", str(trust))
    assert code == 2 and "--threshold: expected ROLE=N" in err


def test_revoke_and_retire_accept_the_public_key_file(keys: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    trust = keys["trust"]
    assert cli(capsys, "trust", "add-key", "--trust-root", str(trust), "--key", f"release={keys['second']}",
               "--label", "second")[0] == 0
    assert cli(capsys, "trust", "add-key", "--trust-root", str(trust), "--key", f"promotion={keys['promo']}",
               "--label", "promo")[0] == 0
    code, _, err = cli(capsys, "trust", "revoke-key", str(keys["second"]), "--trust-root", str(trust),
                       "--reason", "lost")
    assert code == 0, err
    code, _, err = cli(capsys, "trust", "retire-key", "--public-key", str(keys["promo"]), "--trust-root", str(trust))
    assert code == 0, err
    status = roles_and_status(shown(capsys, trust))
    assert status["second"][1] == "revoked" and status["promo"][1] == "retired"
    assert status["release-rel"][1] == "active"


@pytest.mark.parametrize(("argv", "needle"), [
    ([], "KEY: expected a label"),
    (["release-rel", "--public-key", "PROMO"], "give one of them"),
    (["./nope.pub"], "file not found"),
    (["--public-key", "TRUST"], "TRUST"),
])
def test_revoke_key_bad_selectors_are_bad_input(argv: list[str], needle: str, keys: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("PROMO", str(keys["promo"])).replace("TRUST", str(keys["trust"])) for a in argv]
    code, _, err = cli(capsys, "trust", "revoke-key", *argv, "--trust-root", str(keys["trust"]))
    needle = needle.replace("TRUST", str(keys["trust"]))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert roles_and_status(shown(capsys, keys["trust"]))["release-rel"][1] == "active"


def test_help_documents_the_chosen_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    for command, needle in (("add-key", "ROLE=PUBLIC_KEY"), ("set-threshold", "--threshold"),
                            ("revoke-key", "public key file")):
        code, out, _ = cli(capsys, "trust", command, "--help")
        assert code == 0 and needle in " ".join(out.split()), out


def test_every_threshold_problem_is_reported(tmp_path: Path, keys: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "trust", "init", "--output", str(tmp_path / "t2.json"), "--key",
                       f"release={keys['rel']}", "--key", f"promotion={keys['promo']}",
                       "--threshold", "release=2", "--threshold", "promotion=3")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "threshold release=2" in err and "threshold promotion=3" in err
    assert not (tmp_path / "t2.json").exists()
