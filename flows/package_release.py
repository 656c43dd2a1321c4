"""Flow: package and sign a release, then announce it (`ringward.package.published`)."""

from __future__ import annotations

import os
from typing import Any

from prefect import flow

from flows._common import current_flow_run_id, emit, publish_result
from tasks.release import package_release


@flow(name="package-release", log_prints=True)
def package_release_flow(
    dist_dir: str,
    output: str,
    version: str,
    commit: str,
    ref: str,
    repository: str,
    signing_key: str | None = None,
    runtime_name: str | None = None,
    make_zip: bool = False,
    dry_run: bool = False,
    signer: str = "ringward",
    event: str | None = None,
    record: bool = True,
    trust_root: str | None = None,
) -> dict[str, Any]:
    """``trust_root``: its version and root keys go into the offline bootstrap, and it is announced in
    the event, so the ``verify-package-on-publish`` deployment verifies against it."""
    params = {"dist_dir": dist_dir, "output": output, "version": version, "commit": commit, "ref": ref,
              "repository": repository, "signing_key": signing_key, "runtime_name": runtime_name,
              "make_zip": make_zip, "dry_run": dry_run, "signer": signer, "event": event, "record": record,
              "trust_root": trust_root}
    result = package_release(params, current_flow_run_id())
    publish_result("release-package", f"package {result['runtime']} {result['version']}", result)
    emit("ringward.package.published", f"ringward.package.{result['runtime']}.{result['version']}",
         published_payload(result, trust_root))
    return result


def published_payload(result: dict[str, Any], trust_root: str | None = None) -> dict[str, Any]:
    """The ``ringward.package.published`` payload: absolute paths, and the trust root when known
    (null otherwise: the verifying flow then takes ``$RINGWARD_TRUST_ROOT`` on its worker)."""
    root = trust_root or os.environ.get("RINGWARD_TRUST_ROOT", "").strip() or None
    zip_path = result.get("zip_path")
    return {"package_dir": os.path.abspath(result["package_dir"]),
            "zip_path": os.path.abspath(zip_path) if zip_path else None,
            "version": result["version"], "runtime": result["runtime"], "signed": result["signed"],
            "trust_root": os.path.abspath(root) if root else None}
