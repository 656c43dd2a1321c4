"""Prefect task of the keyless-attestation layer of verify-package (one task for every bundle of
the package: sigstore verification of a bundle costs milliseconds, a task run tens of them)."""

from __future__ import annotations

from pathlib import Path

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from ringward.core.release.package_rules import VerifiedContent
from ringward.operations.release.sigstore_attestation import (
    KeylessOptions,
    KeylessOutcome,
    check_keyless_attestations,
    load_keyless_layer,
)
from ringward.operations.release.verify import DirectorySource


@task(name="check-keyless-attestation", cache_policy=NO_CACHE)
def check_keyless_attestation(content: VerifiedContent | None, package_dir: str, options: KeylessOptions) \
        -> KeylessOutcome | State:
    """Read the Sigstore trusted root and verify every binary's bundle over its verified digest. A
    failing family ends in a Failed state (red in the UI) that still carries the outcome."""
    layer = load_keyless_layer(options)
    outcome = check_keyless_attestations(content, DirectorySource(Path(package_dir)), layer)
    if outcome.family.status == "failed":
        return Failed(message=f"{outcome.family.family}: {outcome.family.errors[0].message}"[:500], data=outcome)
    return outcome
