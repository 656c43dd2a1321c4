"""Flow: installer smoke checks (static, then a probe of this platform's binary: a version probe, or
the reference's JSON request/decision protocol)."""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow

from flows._common import current_flow_run_id, final_state, publish_result, unwrap, utc_now
from tasks.release import smoke_installers


@flow(name="smoke-installers", log_prints=True)
def smoke_installers_flow(
    package_dir: str,
    trust_root: str,
    execute: bool = True,
    timeout_seconds: float = 5.0,
    probe_args: list[str] | None = None,
    expect_version: bool = True,
    now: datetime | None = None,
    record: bool = True,
    profile: str = "ringward",
    probe: str | None = None,
) -> State:
    """``profile``: ringward (default), reference or auto, as ``ringward release smoke-installers --profile``;
    ``probe``: version, reference-json or None (the profile's: version for ringward, reference-json for
    reference); ``probe_args`` (None: --version) and ``expect_version`` shape the version probe only."""
    params = {"package_dir": package_dir, "trust_root": trust_root, "execute": execute,
              "timeout_seconds": timeout_seconds, "probe_args": probe_args, "probe": probe,
              "expect_version": expect_version, "now": now or utc_now(), "record": record, "profile": profile}
    # an invalid result is a Failed (red) task carrying the same data
    result = unwrap(smoke_installers(params, current_flow_run_id(), return_state=True))
    publish_result("installer-smoke", f"smoke-installers {package_dir}", result)
    return final_state(result, f"smoke-installers {package_dir}")
