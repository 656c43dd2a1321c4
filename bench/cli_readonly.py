"""Wall time of the read-only CLI commands the issue names (`evidence search`, `approval list`,
`channel status`), each run as a user runs it: a fresh `ringward` process on a store already at the
head revision, with `PYTHONDONTWRITEBYTECODE=1` (as on CI: only the bytecode compiled at install is
used). Goal: <= 0.5 s wall. The peer figure is `python -c pass` in the same run (interpreter start).

    .venv/bin/python bench/cli_readonly.py [--runs 7] [--records 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMANDS = (
    ("evidence search", ["evidence", "search", "--kind", "bench", "--limit", "50", "--json"]),
    ("approval list", ["approval", "list", "--json"]),
    ("channel status", ["channel", "status", "--json"]),
)


def _seed(url: str, records: int) -> None:
    from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
    from ringward.store import open_store

    with open_store(url) as store:
        for i in range(records):
            store.append(EvidenceDraft(kind="bench", actor="bench", subject=EvidenceSubject(), payload={"i": i}))


def _wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        url = f"sqlite:///{home / 'ringward.db'}"
        _seed(url, args.records)
        env = {**os.environ, "RINGWARD_HOME": str(home), "RINGWARD_DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PREFECT_API_URL", None)
        ringward = str(Path(sys.executable).with_name("ringward"))
        peer = [_wall([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
        print(f"{'command':<18} {'median s':>9} {'min s':>7} {'max s':>7}")
        print(f"{'python -c pass':<18} {statistics.median(peer):>9.3f} {min(peer):>7.3f} {max(peer):>7.3f}")
        worst = 0.0
        for name, argv in COMMANDS:
            walls = [_wall([ringward, *argv], env) for _ in range(args.runs)]
            worst = max(worst, statistics.median(walls))
            print(f"{name:<18} {statistics.median(walls):>9.3f} {min(walls):>7.3f} {max(walls):>7.3f}")
        print(f"goal <= 0.5 s (median): {'met' if worst <= 0.5 else 'NOT met'}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
