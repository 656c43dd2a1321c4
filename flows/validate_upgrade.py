"""Flow: validate that a candidate package may replace the previous one."""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow

from flows._common import current_flow_run_id, final_state, publish_result, unwrap, utc_now
from tasks.release import validate_upgrade


@flow(name="validate-upgrade", log_prints=True)
def validate_upgrade_flow(
    previous_dir: str,
    candidate_dir: str,
    trust_root: str,
    allow_same_version: bool = False,
    now: datetime | None = None,
    record: bool = True,
    profile: str = "ringward",
) -> State:
    """``profile``: ringward (default), reference or auto (a reference package upgraded to a Ringward one
    is the migration step), as ``ringward release validate-upgrade --profile``."""
    params = {"previous_dir": previous_dir, "candidate_dir": candidate_dir, "trust_root": trust_root,
              "allow_same_version": allow_same_version, "now": now or utc_now(), "record": record,
              "profile": profile}
    # an invalid result is a Failed (red) task carrying the same data
    result = unwrap(validate_upgrade(params, current_flow_run_id(), return_state=True))
    publish_result("upgrade-validation", f"validate-upgrade {previous_dir} -> {candidate_dir}", result)
    return final_state(result, f"validate-upgrade {previous_dir} -> {candidate_dir}")
