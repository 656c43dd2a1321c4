"""``kev-recheck``: re-check every channel's current release against the stored KEV catalog (run
on a schedule, and when a new catalog is imported: ``ringward kev import`` emits
``ringward.kev.imported`` and the deployment's trigger runs this flow). A match holds the release's channels and opens
(or reuses) a critical ``kev-match`` incident; the run ends Failed when a release is held or a
channel's release could not be checked (never silently passed)."""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed

from flows._common import utc_now
from flows.inventory_ingest import step
from ringward import settings
from ringward.core.errors import InputError
from tasks.advisories_kev import kev_recheck

RECHECK_KEY = "kev-recheck"


@flow(name="kev-recheck", log_prints=True)
def kev_recheck_flow(packages: str | None = None, trust_root: str | None = None, product_map: str | None = None,
                     actor: str | None = None, now: datetime | None = None) -> State:
    """``packages`` and ``trust_root`` default to the settings of the process running the flow
    (``$RINGWARD_PACKAGES`` / ``<home>/packages``, ``$RINGWARD_TRUST_ROOT`` / ``<home>/trust-root.json``):
    the import trigger and prefect.yaml leave them to the worker."""
    packages = packages or str(settings.packages_path())
    if not trust_root:
        configured = settings.configured_trust_root()
        if configured is None:
            raise InputError(f"trust_root: required (a parameter, or {settings.trust_root_path()} "
                             f"from ${settings.TRUST_ROOT_ENV} / $RINGWARD_HOME where the flow runs)")
        trust_root = str(configured)
    params = {"packages": packages, "trust_root": trust_root, "product_map": product_map, "actor": actor}
    result, refused = step(kev_recheck(params, now or utc_now(), return_state=True), "kev-recheck")
    if refused is not None:
        return refused
    rows = [{"channels": ", ".join(r["channels"]), "release": r["release_version"],
             "verdict": "HELD" if r["held"] else "clear", "findings": len(r["findings"]),
             "evidence": r["evidence_id"]} for r in result["releases"]]
    rows += [{"channels": name, "release": "-", "verdict": "UNCHECKED", "findings": why[:200], "evidence": "-"}
             for name, why in sorted(result["unchecked"].items())]
    held = sum(1 for r in result["releases"] if r["held"])
    title = f"KEV re-check: {len(result['releases'])} release(s), {held} held, {len(result['unchecked'])} unchecked"
    create_table_artifact(key=RECHECK_KEY, description=title, table=rows or [{"-": "no channel has a release"}])
    if not result["ok"]:
        return Failed(message=title, data=result)
    return Completed(message=title, data=result)
