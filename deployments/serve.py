"""Serve every Ringward deployment from one process (no work pool needed):

    prefect server start            # terminal 1 (UI at http://127.0.0.1:4200)
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve   # terminal 2

The production path is `prefect deploy --all` with `prefect.yaml` and a process worker.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import serve
from prefect.events import DeploymentEventTrigger

from flows.deliver_event import deliver_event_flow
from flows.package_release import package_release_flow
from flows.redeliver_failed import redeliver_failed_flow
from flows.smoke_installers import smoke_installers_flow
from flows.validate_upgrade import validate_upgrade_flow
from flows.verify_airgap import verify_airgap_flow
from flows.verify_evidence_chain import verify_evidence_chain
from flows.verify_package import verify_package_flow


def main() -> None:
    deployments: list[Any] = [
        package_release_flow.to_deployment(name="on-demand", tags=["release"]),
        verify_package_flow.to_deployment(name="on-demand", tags=["release", "verification"]),
        verify_package_flow.to_deployment(
            name="on-package-published",
            tags=["release", "verification", "event-driven"],
            triggers=[
                DeploymentEventTrigger(
                    expect={"ringward.package.published"},
                    match={"prefect.resource.id": "ringward.package.*"},
                    parameters={
                        "package_dir": "{{ event.payload.package_dir }}",
                        "trust_root": "{{ event.payload.trust_root or '/etc/ringward/trust-root.json' }}",
                    },
                )
            ],
        ),
        verify_airgap_flow.to_deployment(name="on-demand", tags=["release", "air-gap"]),
        validate_upgrade_flow.to_deployment(name="on-demand", tags=["release", "upgrade"]),
        smoke_installers_flow.to_deployment(name="on-demand", tags=["release", "smoke"]),
        verify_evidence_chain.to_deployment(name="daily", tags=["evidence", "audit"], cron="15 3 * * *",
                                            parameters={"check_files": True, "record": True}),
        deliver_event_flow.to_deployment(name="on-demand", tags=["connectors"]),
        redeliver_failed_flow.to_deployment(
            name="scheduled", tags=["connectors", "scheduled"], interval=300,
            parameters={"config_path": os.environ.get("RINGWARD_CONNECTORS", "/etc/ringward/connectors.yaml")},
        ),
    ]
    serve(*deployments)


if __name__ == "__main__":
    main()
