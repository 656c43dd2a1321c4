"""`ringward trust sign-root` / `trust update`: upgrade in place, follow a rotation, refuse without
touching CURRENT, exit codes 0/1/2, evidence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ringward.cli.main import run
from ringward.core.evidence.query import EvidenceQuery
from ringward.operations.trust.rotation import KIND_ROTATION
from tests.trust.helpers import NOW


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run(list(argv))
    code = exited.value.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    return out


def shown(capsys: pytest.CaptureFixture[str], trust: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(ok(capsys, "trust", "show", "--trust-root", str(trust), "--json"))  # type: ignore[no-any-return]


class Env:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        for name in ("rel", "r1", "r2", "r3", "mallory"):
            ok(capsys, "keys", "generate", "--private-key", str(tmp_path / f"{name}.pem"),
               "--public-key", str(tmp_path / f"{name}.pub"))
        self.current = tmp_path / "trust.json"
        ok(capsys, "trust", "init", "--output", str(self.current), "--key", f"release={self.pub('rel')}")

    def pub(self, name: str) -> Path:
        return self.tmp / f"{name}.pub"

    def priv(self, name: str) -> Path:
        return self.tmp / f"{name}.pem"

    def trust(self, *argv: str, root: Path | None = None) -> tuple[int, str, str]:
        return cli(self.capsys, "trust", *argv, "--trust-root", str(root or self.current))

    def upgrade(self) -> None:
        """Legacy -> chained, in place: root key r1, threshold 1, self-signed."""
        assert self.trust("add-key", "--key", f"root={self.pub('r1')}")[0] == 0
        assert self.trust("set-threshold", "--threshold", "root=1")[0] == 0
        assert self.trust("sign-root", "--signing-key", str(self.priv("r1")))[0] == 0

    def successor(self, base: Path, name: str, *, add: str, retire: str | None, signers: list[str]) -> Path:
        """Copy ``base``, add root key ``add``, retire ``retire``, sign with ``signers``."""
        new = self.tmp / name
        shutil.copyfile(base, new)
        assert self.trust("add-key", "--key", f"root={self.pub(add)}", "--label", f"root-{add}", root=new)[0] == 0
        if retire is not None:
            assert self.trust("retire-key", f"root-{retire}" if retire != "r1" else str(self.pub("r1")),
                              root=new)[0] == 0
        for signer in signers:
            code, _, err = self.trust("sign-root", "--signing-key", str(self.priv(signer)), root=new)
            assert code == 0, err
        return new


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str], ringward_home: Path) -> Env:
    return Env(tmp_path, capsys)


def rotation_evidence() -> list[dict]:  # type: ignore[type-arg]
    from ringward.store import open_store

    with open_store() as store:
        return [r.payload for r in store.search_evidence(EvidenceQuery(kind=KIND_ROTATION)).items]


def test_upgrade_in_place_keeps_one_version_and_signs_it(env: Env) -> None:
    before = shown(env.capsys, env.current)["version"]
    env.upgrade()
    doc = shown(env.capsys, env.current)
    # add-key starts the chained version; set-threshold on the unsigned draft does not bump it again
    assert doc["version"] == before + 1
    assert doc["thresholds"]["root"] == 1 and len(doc["signatures"]) == 1
    code, out, _ = env.trust("show")
    assert code == 0 and "1 root signature(s)" in out


def test_editing_a_signed_root_starts_the_next_version_unsigned(env: Env) -> None:
    env.upgrade()
    version = shown(env.capsys, env.current)["version"]
    assert env.trust("add-key", "--key", f"promotion={env.pub('r3')}")[0] == 0
    doc = shown(env.capsys, env.current)
    assert doc["version"] == version + 1 and doc["signatures"] == []


def test_sign_root_on_a_legacy_root_is_bad_input(env: Env) -> None:
    before = env.current.read_bytes()
    code, _, err = env.trust("sign-root", "--signing-key", str(env.priv("r1")))
    assert code == 2 and "pins no root-role key" in err and len(err.strip().splitlines()) == 1
    assert env.current.read_bytes() == before


def test_update_follows_a_rotation_and_records_evidence(env: Env) -> None:
    env.upgrade()
    v = shown(env.capsys, env.current)["version"]
    new = env.successor(env.current, "next.json", add="r2", retire="r1", signers=["r1", "r2"])
    assert shown(env.capsys, new)["version"] == v + 1
    code, out, err = env.trust("update", str(new), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["decision"] == "accepted" and (report["previous_version"], report["version"]) == (v, v + 1)
    assert env.current.read_bytes() == new.read_bytes()
    evidence = rotation_evidence()
    assert [e["decision"] for e in evidence] == ["accepted"] and evidence[0]["version"] == v + 1


def test_an_acceptance_the_store_cannot_record_leaves_current_untouched(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.upgrade()
    new = env.successor(env.current, "next.json", add="r2", retire="r1", signers=["r1", "r2"])
    before = env.current.read_bytes()
    blocker = env.tmp / "not-a-directory"
    blocker.write_text("x")
    # the evidence store cannot be opened: the update must not replace CURRENT without its record
    monkeypatch.setenv("RINGWARD_DATABASE_URL", f"sqlite:///{blocker / 'ringward.db'}")
    code, _, err = env.trust("update", str(new))
    assert code == 2 and err.startswith("error: RINGWARD_DATABASE_URL: cannot create the directory"), err
    assert env.current.read_bytes() == before


def test_update_follows_several_versions_given_as_files_or_a_directory(env: Env) -> None:
    env.upgrade()
    v = shown(env.capsys, env.current)["version"]
    mid = env.successor(env.current, "mid.json", add="r2", retire="r1", signers=["r1", "r2"])
    last = env.successor(mid, "last.json", add="r3", retire="r2", signers=["r2", "r3"])
    history = env.tmp / "history"
    history.mkdir()
    shutil.copyfile(env.current, history / "a-current.json")
    shutil.copyfile(mid, history / "b.json")
    shutil.copyfile(last, history / "c.json")
    start = env.current.read_bytes()
    code, out, err = env.trust("update", str(history))
    assert code == 0 and f"v{v} -> v{v + 2}" in out, err
    assert shown(env.capsys, env.current)["version"] == v + 2
    env.current.write_bytes(start)
    code, _, err = env.trust("update", str(last), str(mid))  # order given does not matter: sorted by version
    assert code == 0, err
    assert shown(env.capsys, env.current)["version"] == v + 2
    # from the middle, the directory's older versions are history and are skipped
    assert env.trust("update", str(history))[0] == 1  # nothing newer than v+2 now


@pytest.mark.parametrize(("case", "needle"), [
    ("old-keys-missing", "of previous version's"),
    ("new-keys-missing", "of its own"),
    ("unpinned", "of previous version's"),
    ("tampered", "changed after signing"),
    ("rollback", "refusing a rollback"),
    ("skip", "expected exactly"),
    ("fork", "forked"),
    ("expired", "expired at"),
])
def test_refusals_exit_1_with_one_line_and_leave_current_untouched(env: Env, case: str, needle: str) -> None:
    env.upgrade()
    signers = {"old-keys-missing": ["r2"], "new-keys-missing": ["r1"], "unpinned": ["mallory", "r2"]}
    unsigned_first = case == "expired"  # edits after signing would start yet another version
    new = env.successor(env.current, "next.json", add="r2", retire="r1",
                        signers=[] if unsigned_first else signers.get(case, ["r1", "r2"]))
    extra: list[str] = []
    if case == "tampered":
        doc = json.loads(new.read_text())
        doc["trusted_builders"] = ["https://evil.example/builder"]
        new.write_text(json.dumps(doc))
    elif case in ("rollback", "fork"):
        accepted = env.tmp / "accepted.json"
        shutil.copyfile(new, accepted)
        assert env.trust("update", str(accepted))[0] == 0
        if case == "fork":
            new = env.successor(env.current.parent / "next.json", "fork.json", add="r3", retire=None,
                                signers=["r1", "r2"])
            doc = json.loads(new.read_text())
            doc["version"] -= 1
            new.write_text(json.dumps(doc))
        else:
            older = env.tmp / "older.json"
            doc = json.loads(accepted.read_text())
            doc["version"] -= 1
            older.write_text(json.dumps(doc))
            new = older
    elif case == "skip":
        doc = json.loads(new.read_text())
        doc["version"] += 1
        new.write_text(json.dumps(doc))
    elif case == "expired":
        assert env.trust("set-expiry", "--expires", "2030-01-01T00:00:00Z", root=new)[0] == 0
        for signer in ("r1", "r2"):
            assert env.trust("sign-root", "--signing-key", str(env.priv(signer)), root=new)[0] == 0
        extra = ["--at", "2031-01-01T00:00:00Z"]
    before = env.current.read_bytes()
    code, out, err = env.trust("update", str(new), "--json", *extra)
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert json.loads(out)["decision"] == "refused"
    assert env.current.read_bytes() == before
    assert sorted(e["decision"] for e in rotation_evidence()) == (
        ["accepted", "refused"] if case in ("rollback", "fork") else ["refused"])
    assert not [p for p in env.current.parent.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_expiry_in_the_future_is_accepted(env: Env) -> None:
    env.upgrade()
    new = env.successor(env.current, "next.json", add="r2", retire="r1", signers=[])
    assert env.trust("set-expiry", "--expires", "2030-01-01T00:00:00Z", root=new)[0] == 0
    for signer in ("r1", "r2"):
        assert env.trust("sign-root", "--signing-key", str(env.priv(signer)), root=new)[0] == 0
    code, _, err = env.trust("update", str(new), "--at", "2029-12-31T00:00:00Z", "--no-evidence")
    assert code == 0, err
    assert shown(env.capsys, env.current)["expires"].startswith("2030-01-01")
    assert rotation_evidence() == []


def test_legacy_current_root_refuses_with_the_upgrade_hint(env: Env) -> None:
    other = env.tmp / "other.json"
    shutil.copyfile(env.current, other)
    assert env.trust("add-key", "--key", f"root={env.pub('r1')}", root=other)[0] == 0
    assert env.trust("sign-root", "--signing-key", str(env.priv("r1")), root=other)[0] == 0
    before = env.current.read_bytes()
    code, _, err = env.trust("update", str(other))
    assert code == 1 and "upgrade it in place" in err
    assert env.current.read_bytes() == before


@pytest.mark.parametrize("case", ["missing", "not-json", "bad-schema", "bad-at", "empty-dir"])
def test_bad_input_exits_2_and_leaves_current_untouched(env: Env, case: str) -> None:
    env.upgrade()
    new = env.tmp / "new.json"
    argv = [str(new)]
    if case == "not-json":
        new.write_text("{nope")
    elif case == "bad-schema":
        new.write_text(json.dumps({"schema_version": "ringward.trust-root.v1", "version": "two"}))
    elif case == "bad-at":
        shutil.copyfile(env.current, new)
        argv += ["--at", "yesterday"]
    elif case == "empty-dir":
        new.mkdir()
    before = env.current.read_bytes()
    code, _, err = env.trust("update", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert env.current.read_bytes() == before


def test_current_changed_during_verification_is_not_overwritten(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.core.errors import StoreConflictError
    from ringward.operations.trust import rotation

    env.upgrade()
    new = env.successor(env.current, "next.json", add="r2", retire="r1", signers=["r1", "r2"])
    planned = rotation.plan_chain

    def plan_then_concurrent_edit(current, paths):  # type: ignore[no-untyped-def]
        result = planned(current, paths)
        env.current.write_bytes(env.current.read_bytes().replace(b'"release"', b'"release" '))
        return result

    monkeypatch.setattr(rotation, "plan_chain", plan_then_concurrent_edit)
    edited = None
    try:
        rotation.update_trust_root(env.current, [new], now=NOW, actor="t", record=False)
    except StoreConflictError as exc:
        edited = exc
    assert edited is not None and "changed while" in edited.message
    assert b'"release" ' in env.current.read_bytes()



def test_key_holders_signing_at_once_all_keep_their_signature(env: Env) -> None:
    import subprocess
    import sys

    env.upgrade()
    for name in ("r2", "r3"):
        assert env.trust("add-key", "--key", f"root={env.pub(name)}")[0] == 0
    signers = [subprocess.Popen([sys.executable, "-m", "ringward.cli.main", "trust", "sign-root", "--trust-root",
                                 str(env.current), "--signing-key", str(env.priv(name))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("r1", "r2", "r3")]
    for process in signers:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    signatures = shown(env.capsys, env.current)["signatures"]
    assert len({s["key_id"] for s in signatures}) == 3, signatures


def test_the_root_role_is_never_given_to_a_key_with_another_role(env: Env) -> None:
    before = env.current.read_bytes()
    code, _, err = env.trust("add-key", "--key", f"root={env.pub('rel')}")  # rel is the release key
    assert code == 2 and "expected the root role alone, found root with release" in err, err
    assert env.current.read_bytes() == before
    env.upgrade()  # a separate root key is fine
    assert shown(env.capsys, env.current)["signatures"]
