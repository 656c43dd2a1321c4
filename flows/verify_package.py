"""Flow: verify a release package, one task per check family so the UI shows which failed."""

from __future__ import annotations

import os
from datetime import datetime

from prefect import State, flow
from prefect.utilities.annotations import quote

from flows._common import current_flow_run_id, final_state, publish_result, unwrap, utc_now
from ringward.core.errors import InputError
from ringward.core.release.package_rules import FAMILY_NAMES
from ringward.operations.release.verify import prefetch_spdx, summarize
from tasks.release import check_family, record_verification, verify_integrity


@flow(name="verify-package", log_prints=True)
def verify_package_flow(
    package_dir: str,
    trust_root: str | None = None,
    now: datetime | None = None,
    allow_unsigned: bool = False,
    record: bool = True,
    profile: str = "ringward",
) -> State:
    """Ends Completed when the package verifies, Failed (carrying the same result) when not.
    ``trust_root`` defaults to ``$RINGWARD_TRUST_ROOT`` on the worker (event triggers pass null
    when the publisher did not know one). ``profile``: ringward (default), reference or auto, as
    ``ringward release verify-package --profile``."""
    trust_root = trust_root or os.environ.get("RINGWARD_TRUST_ROOT", "").strip() or None
    if trust_root is None:
        raise InputError("trust_root: required (parameter or RINGWARD_TRUST_ROOT on the worker)")
    prefetch_spdx()
    moment = now or utc_now()
    integrity, choice = verify_integrity(package_dir, trust_root, moment, allow_unsigned, profile)
    # quote(): the verified content holds raw document bytes and the trust root; Prefect should pass
    # it through as-is instead of walking it for futures
    content = quote(integrity.content)
    families = [unwrap(check_family(name, content, return_state=True)) for name in FAMILY_NAMES]
    verification = summarize(package_dir, integrity, families, choice)
    result = record_verification(verification, package_dir, record, current_flow_run_id())
    publish_result("package-verification", f"verify-package {package_dir}", result)
    return final_state(result, f"verify-package {package_dir}")
