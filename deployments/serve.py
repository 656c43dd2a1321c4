"""Serve every Ringward deployment from one process (no work pool needed):

    prefect server start            # terminal 1 (UI at http://127.0.0.1:4200)
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve   # terminal 2

The production path is `prefect deploy --all` with `prefect.yaml` and a process worker. Both declare
the same deployments (names, flows, triggers, schedules; tests/flows/test_deployments_agree.py).

Event-triggered deployments:

- ``verify-package-on-publish``     on ``ringward.package.published``  (``ringward.package.*``)
- ``audit-on-promotion-executed``   on ``ringward.promotion.executed`` (``ringward.rollout.*``)
- ``audit-on-rollback-executed``    on ``ringward.rollback.executed``  (``ringward.rollout.*``)
- ``execute-on-approval``           on ``ringward.approval.decided``   (``ringward.approval.*``); its
  trigger is off unless ``RINGWARD_EXECUTE_ON_APPROVAL=1`` (in prefect.yaml: ``enabled: false``)

Trigger parameters are plain ``{{ event.payload.<field> }}`` templates (Prefect renders them as
``{{ … | tojson }}``, so an ``or`` default inside one breaks); the events carry absolute paths and
the flows default what is missing (null) from the worker's environment: ``RINGWARD_TRUST_ROOT``,
``RINGWARD_CONNECTORS``, ``RINGWARD_WINDOWS``, ``RINGWARD_AUTOMATION_ACTOR``.

Entrypoints are module paths (``flows.x.flow``), so the process may run from any directory where
Ringward is installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval
from prefect.types.entrypoint import EntrypointType

from flows.deliver_event import deliver_event_flow
from flows.package_release import package_release_flow
from flows.promotion_automation import audit_on_execution_flow, execute_on_approval_flow
from flows.promotion_channel import (
    deliver_endpoint_export_flow,
    export_endpoint_flow,
    request_channel_promotion_flow,
    validate_channel_upgrade_flow,
)
from flows.promotion_rollout import (
    audit_flow,
    capture_flow,
    execute_flow,
    request_promotion_flow,
    request_rollback_flow,
    rollback_flow,
    verify_flow,
)
from flows.redeliver_failed import redeliver_failed_flow
from flows.smoke_installers import smoke_installers_flow
from flows.validate_upgrade import validate_upgrade_flow
from flows.verify_airgap import verify_airgap_flow
from flows.verify_evidence_chain import verify_evidence_chain
from flows.verify_package import verify_package_flow

EXECUTE_ON_APPROVAL_ENV = "RINGWARD_EXECUTE_ON_APPROVAL"
DEFAULT_CONNECTORS = "/etc/ringward/connectors.yaml"


def execute_on_approval_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """``RINGWARD_EXECUTE_ON_APPROVAL=1`` turns the execute-on-approval trigger on."""
    value = (os.environ if environ is None else environ).get(EXECUTE_ON_APPROVAL_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _on(event: str, resource: str, parameters: dict[str, str], *, enabled: bool = True) -> DeploymentEventTrigger:
    return DeploymentEventTrigger(enabled=enabled, expect={event}, match={"prefect.resource.id": resource},
                                  parameters=parameters)


def _deploy(flow: Any, name: str, tags: list[str], description: str, **options: Any) -> RunnerDeployment:
    deployment: RunnerDeployment = flow.to_deployment(name=name, tags=tags, description=description,
                                                      entrypoint_type=EntrypointType.MODULE_PATH, **options)
    return deployment


def build_deployments(environ: Mapping[str, str] | None = None) -> list[RunnerDeployment]:
    """Every deployment, as `prefect.yaml` declares it (without serving anything)."""
    env = os.environ if environ is None else environ
    connectors = env.get("RINGWARD_CONNECTORS", DEFAULT_CONNECTORS)
    audit = ["rollout", "audit", "event-driven"]
    return [
        # --- release ---
        _deploy(package_release_flow, "package-release", ["release"],
                "Build, sign and zip a runtime release package; emits ringward.package.published."),
        _deploy(verify_package_flow, "verify-package", ["release", "verification"],
                "Verify a package against the pinned trust root (one task per check family)."),
        _deploy(verify_package_flow, "verify-package-on-publish", ["release", "verification", "event-driven"],
                "Verifies every package as soon as it is published.", concurrency_limit=2,
                triggers=[_on("ringward.package.published", "ringward.package.*", {
                    "package_dir": "{{ event.payload.package_dir }}",
                    "trust_root": "{{ event.payload.trust_root }}",
                })]),
        _deploy(verify_airgap_flow, "verify-airgap-bundle", ["release", "air-gap"],
                "Verify an air-gapped bundle zip member by member (never extractall)."),
        _deploy(validate_upgrade_flow, "validate-upgrade", ["release", "upgrade"],
                "Refuse rollbacks, re-published versions and removed controls."),
        _deploy(smoke_installers_flow, "smoke-installers", ["release", "smoke"],
                "Static installer checks and a version probe of this platform's binary."),
        # --- connectors and evidence ---
        _deploy(deliver_event_flow, "deliver-event", ["connectors", "delivery"],
                "Deliver one event to the configured SIEM/ITSM/ChatOps/fleet destinations (idempotent).",
                parameters={"config_path": connectors}),
        _deploy(redeliver_failed_flow, "redeliver-failed", ["connectors", "delivery", "scheduled"],
                "Retry failed connector deliveries inside their redelivery window; expire older ones.",
                concurrency_limit=1, parameters={"config_path": connectors, "limit": 1000},
                schedules=[Interval(300)]),
        _deploy(verify_evidence_chain, "verify-evidence-chain-daily", ["evidence", "audit", "scheduled"],
                "Re-walk the evidence hash chain and every bundle's checksums.txt; record the result.",
                concurrency_limit=1, parameters={"check_files": True, "record": True},
                schedules=[Cron("15 3 * * *", timezone="UTC")]),
        # --- channel promotion ---
        _deploy(request_channel_promotion_flow, "request-channel-promotion", ["promotion", "channel"],
                "Sign a release-channel promotion request and open its approval; emits ringward.promotion.requested."),
        _deploy(export_endpoint_flow, "export-endpoint", ["promotion", "channel", "endpoint"],
                "Consume a channel promotion approval and write the Jamf/Intune/Linux endpoint export."),
        _deploy(deliver_endpoint_export_flow, "deliver-endpoint-export", ["promotion", "endpoint", "delivery"],
                "Publish an endpoint export to its Jamf / Intune / Linux fleet destinations."),
        _deploy(validate_channel_upgrade_flow, "validate-channel-upgrade", ["promotion", "channel", "upgrade"],
                "validate-upgrade against a channel's high-water mark and hold."),
        # --- rollouts (one flow per step; parameter `params` holds the step's options) ---
        _deploy(capture_flow, "rollout-capture", ["rollout"], "Capture a rollout of a verified package."),
        _deploy(verify_flow, "rollout-verify", ["rollout"], "Verify a rollout directory and its package."),
        _deploy(request_promotion_flow, "rollout-request-promotion", ["rollout", "promotion"],
                "Sign a rollout promotion request and open its approval; emits ringward.promotion.requested."),
        _deploy(execute_flow, "rollout-execute-promotion", ["rollout", "promotion"],
                "Execute an approved promotion (approval consumed once); emits ringward.promotion.executed."),
        _deploy(request_rollback_flow, "rollout-request-rollback", ["rollout", "rollback"],
                "Sign a rollback request for a recorded promotion execution and open its approval."),
        _deploy(rollback_flow, "rollout-rollback", ["rollout", "rollback"],
                "Roll back a promotion execution (once); emits ringward.rollback.executed."),
        _deploy(audit_flow, "rollout-audit", ["rollout", "audit"],
                "Export (and with a connector config deliver) the audit event of an execution or rollback."),
        # --- promotion automation (event-triggered) ---
        _deploy(audit_on_execution_flow, "audit-on-promotion-executed", audit,
                "Audit every promotion execution as soon as it is recorded (delivers with RINGWARD_CONNECTORS).",
                triggers=[_on("ringward.promotion.executed", "ringward.rollout.*",
                              {"record_path": "{{ event.payload.execution_path }}"})]),
        _deploy(audit_on_execution_flow, "audit-on-rollback-executed", audit,
                "Audit every rollback as soon as it is recorded (delivers with RINGWARD_CONNECTORS).",
                triggers=[_on("ringward.rollback.executed", "ringward.rollout.*",
                              {"record_path": "{{ event.payload.rollback_path }}"})]),
        _deploy(execute_on_approval_flow, "execute-on-approval", ["rollout", "promotion", "event-driven"],
                "Opt-in: execute a rollout promotion as soon as its approval is approved (consumed once).",
                concurrency_limit=1,
                triggers=[_on("ringward.approval.decided", "ringward.approval.*", {
                    "approval_id": "{{ event.payload.approval_id }}",
                    "action": "{{ event.payload.action }}",
                    "state": "{{ event.payload.state }}",
                }, enabled=execute_on_approval_enabled(env))]),
    ]


def main() -> None:
    from prefect import serve

    serve(*build_deployments())


if __name__ == "__main__":
    main()
