"""Flow: verify a release package, one task per check family so the UI shows which failed."""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow
from prefect.utilities.annotations import quote

from flows._common import current_flow_run_id, final_state, publish_result, unwrap, utc_now
from ringward import settings
from ringward.core.errors import InputError
from ringward.core.release.package_rules import FAMILY_NAMES
from ringward.operations.release.sigstore_attestation import keyless_options
from ringward.operations.release.verify import prefetch_spdx, summarize
from tasks.release import check_family, record_verification, verify_integrity
from tasks.release_sigstore import check_keyless_attestation


@flow(name="verify-package", log_prints=True)
def verify_package_flow(
    package_dir: str,
    trust_root: str | None = None,
    now: datetime | None = None,
    allow_unsigned: bool = False,
    record: bool = True,
    profile: str = "ringward",
    sigstore_trusted_root: str | None = None,
    sigstore_identity: str | None = None,
    sigstore_issuer: str | None = None,
    require_sigstore: bool = False,
) -> State:
    """Ends Completed when the package verifies, Failed (carrying the same result) when not.
    ``trust_root`` defaults to the settings of the process running the flow (event triggers pass
    null when the publisher did not know one): ``$RINGWARD_TRUST_ROOT`` or
    ``$RINGWARD_HOME/trust-root.json``. ``profile``: ringward (default), reference or auto, as
    ``ringward release verify-package --profile``. ``sigstore_*`` / ``require_sigstore``: the optional
    keyless-attestation layer, as ``--sigstore-trusted-root/--sigstore-identity/--sigstore-issuer`` and
    ``--require-sigstore`` (all three values or none)."""
    keyless = keyless_options(sigstore_trusted_root, sigstore_identity, sigstore_issuer, require_sigstore)
    if not trust_root:
        configured = settings.configured_trust_root()
        if configured is None:
            raise InputError(f"trust_root: required (a parameter, or {settings.trust_root_path()} "
                             f"from ${settings.TRUST_ROOT_ENV} / $RINGWARD_HOME where the flow runs)")
        trust_root = str(configured)
    prefetch_spdx()
    moment = now or utc_now()
    # a failed integrity family is a Failed task that still carries its scan: the run goes on to
    # report every family, as the in-process path does
    integrity, choice = unwrap(verify_integrity(package_dir, trust_root, moment, allow_unsigned, profile,
                                                keyless is not None, return_state=True))
    # quote(): the verified content holds raw document bytes and the trust root; Prefect should pass
    # it through as-is instead of walking it for futures
    content = quote(integrity.content)
    families = [unwrap(check_family(name, content, return_state=True)) for name in FAMILY_NAMES]
    outcome = None
    if keyless is not None:
        outcome = unwrap(check_keyless_attestation(content, package_dir, keyless, return_state=True))
        families.append(outcome.family)
    verification = summarize(package_dir, integrity, families, choice)
    result = record_verification(verification, package_dir, record, current_flow_run_id(),
                                 outcome.extra if outcome else None, outcome.evidence_files if outcome else None)
    publish_result("package-verification", f"verify-package {package_dir}", result)
    return final_state(result, f"verify-package {package_dir}")
