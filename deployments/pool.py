"""Register every catalog deployment into a ``process`` work pool (``ringward deploy``).

The deployments are exactly ``prefect.yaml`` as ``python -m deployments.render`` renders it from the
catalog, with the work pool set to the one asked for, deployed by Prefect's own ``prefect --no-prompt
deploy --all``: one source, and the same result as the documented production path. Then the
crash-recovery automations (``deployments/automations.py``) are applied for those deployments.

No Prefect import here: Prefect runs in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from deployments import render
from deployments.catalog import CATALOG
from ringward.operations.common.scale_out import PoolSetupError

DEPLOY_TIMEOUT_S = 900


def pool_prefect_yaml(pool: str) -> str:
    """The rendered ``prefect.yaml`` with every deployment in work pool ``pool`` (queue ``default``)."""
    text = render.render()
    if pool == render.WORK_POOL:
        return text
    document = yaml.safe_load(text)
    for deployment in document["deployments"]:
        deployment["work_pool"] = {"name": pool, "work_queue_name": "default"}
    document["definitions"] = {"work_pool": {"name": pool, "work_queue_name": "default"}}
    return yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)


def deploy_all(pool: str, env: Mapping[str, str], log_path: Path) -> None:
    """``prefect --no-prompt deploy --all`` of :func:`pool_prefect_yaml` (output appended to ``log_path``);
    raises :class:`PoolSetupError` (exit 3) naming the log when Prefect fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ringward-deploy-") as scratch:
        project = Path(scratch) / "prefect.yaml"
        project.write_text(pool_prefect_yaml(pool), encoding="utf-8")
        with log_path.open("ab") as log:
            done = subprocess.run(
                [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(project)],
                cwd=scratch, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=DEPLOY_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise PoolSetupError(f"prefect deploy --all exited with code {done.returncode}; see {log_path}")


def catalog_names() -> list[str]:
    return [deployment.name for deployment in CATALOG]
