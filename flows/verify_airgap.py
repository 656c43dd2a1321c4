"""Flow: verify an air-gapped bundle zip (and optionally extract it after verification)."""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow

from flows._common import current_flow_run_id, final_state, publish_result, unwrap, utc_now
from tasks.release import verify_airgap


@flow(name="verify-airgap-bundle", log_prints=True)
def verify_airgap_flow(
    bundle: str,
    trust_root: str,
    extract_dir: str | None = None,
    require_bootstrap: bool = True,
    now: datetime | None = None,
    record: bool = True,
    profile: str = "ringward",
) -> State:
    """``profile``: ringward (default), reference or auto, as ``ringward release verify-airgap-bundle --profile``."""
    params = {"bundle": bundle, "trust_root": trust_root, "extract_dir": extract_dir,
              "require_bootstrap": require_bootstrap, "now": now or utc_now(), "record": record, "profile": profile}
    # an invalid result is a Failed (red) task carrying the same data
    result = unwrap(verify_airgap(params, current_flow_run_id(), return_state=True))
    publish_result("airgap-verification", f"verify-airgap-bundle {bundle}", result)
    return final_state(result, f"verify-airgap-bundle {bundle}")
