"""Every Ringward deployment, declared once.

``prefect.yaml`` is rendered from this list (``python -m deployments.render``; a test fails when the
committed file differs), ``deployments/serve.py`` builds its runner deployments from it and
``ringward up`` serves them. Adding a deployment is adding one :class:`Deployment` entry to
:data:`CATALOG`.

Paths are never literals here: a parameter that names a file Ringward keeps is a :class:`Setting`,
resolved where the runs execute (``$RINGWARD_HOME`` and friends, see ``ringward/settings.py``). A
deployment that cannot run before something is configured names it in ``needs``: it is served with
its schedules inactive and its triggers disabled until that file exists (``ringward up`` says so),
so nothing piles up red in the UI on a fresh home.

This module imports no Prefect: rendering and checks stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ringward import settings


class Setting(Enum):
    """A file location that comes from the Ringward settings of the process running the flow."""

    TRUST_ROOT = "trust_root"
    CONNECTORS = "connectors"
    SLA_HANDOFFS = "sla_handoffs"
    SLA_POLICY = "sla_policy"
    PACKAGES = "packages"
    #: the inventory automation's remediation-role signing key (a PEM file)
    REMEDIATION_KEY = "remediation_key"

    @property
    def env(self) -> str:
        return {Setting.TRUST_ROOT: settings.TRUST_ROOT_ENV, Setting.CONNECTORS: settings.CONNECTORS_ENV,
                Setting.SLA_HANDOFFS: settings.SLA_HANDOFFS_ENV, Setting.SLA_POLICY: settings.SLA_POLICY_ENV,
                Setting.PACKAGES: settings.PACKAGES_ENV, Setting.REMEDIATION_KEY: "RINGWARD_REMEDIATION_KEY"}[self]

    @property
    def default_name(self) -> str:
        """File name under ``$RINGWARD_HOME`` when the variable is unset."""
        return {Setting.TRUST_ROOT: "trust-root.json", Setting.CONNECTORS: "connectors.yaml",
                Setting.SLA_HANDOFFS: "remediation-handoffs", Setting.SLA_POLICY: "sla-routing.yaml",
                Setting.PACKAGES: "packages", Setting.REMEDIATION_KEY: "remediation-key.pem"}[self]

    def path(self) -> Path:
        resolve: Callable[[], Path] = {Setting.TRUST_ROOT: settings.trust_root_path,
                                       Setting.CONNECTORS: settings.connectors_path,
                                       Setting.SLA_HANDOFFS: settings.sla_handoffs_path,
                                       Setting.SLA_POLICY: settings.sla_policy_path,
                                       Setting.PACKAGES: settings.packages_path,
                                       Setting.REMEDIATION_KEY: _remediation_key_path}[self]
        return resolve()

    def exists(self) -> bool:
        """The file (a directory for the handoff and package folders) is there."""
        path = self.path()
        return path.is_dir() if self in (Setting.SLA_HANDOFFS, Setting.PACKAGES) else path.is_file()

    def describe(self) -> str:
        return f"${self.env} or $RINGWARD_HOME/{self.default_name}"


def _remediation_key_path() -> Path:
    from ringward.operations.remediation.automation import remediation_key_path

    return remediation_key_path()


@dataclass(frozen=True)
class Interval:
    """Every ``seconds`` seconds."""

    seconds: int


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str = "UTC"


Schedule = Interval | Cron


@dataclass(frozen=True)
class OnEvent:
    """Run the deployment when ``event`` arrives for a resource matching ``resource``.

    ``parameters`` are plain ``{{ event.payload.<field> }}`` templates: Prefect 3.9 renders each as
    ``{{ … | tojson }}``, so a Jinja ``or`` default inside one breaks (the flow defaults instead).
    ``opt_in_env``: the trigger is off unless that variable is 1/true/yes/on where it is served (and
    ``enabled: false`` in prefect.yaml)."""

    event: str
    resource: str
    parameters: Mapping[str, str]
    opt_in_env: str | None = None


@dataclass(frozen=True)
class Deployment:
    name: str
    #: ``module:function`` of the flow (module paths: runs import the installed package, no checkout)
    entrypoint: str
    description: str
    tags: tuple[str, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    schedules: tuple[Schedule, ...] = ()
    triggers: tuple[OnEvent, ...] = ()
    concurrency_limit: int | None = None
    #: files without which the deployment's unattended runs cannot succeed: until they exist its
    #: schedules are inactive and its triggers disabled
    needs: tuple[Setting, ...] = ()
    #: a line for the operator, rendered as a comment above the entry in prefect.yaml
    note: str | None = None

    @property
    def module_path(self) -> str:
        """``flows.x.flow_fn``: Prefect's module-path entrypoint spelling."""
        return self.entrypoint.replace(":", ".")

    def missing(self) -> list[Setting]:
        """The needed settings whose file does not exist here (now)."""
        return [need for need in self.needs if not need.exists()]

    def resolved_parameters(self) -> dict[str, Any]:
        """Parameters with every :class:`Setting` resolved in this process's environment."""
        return {k: str(v.path()) if isinstance(v, Setting) else v for k, v in self.parameters.items()}


def opted_in(variable: str, environ: Mapping[str, str]) -> bool:
    return environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


EXECUTE_ON_APPROVAL_ENV = "RINGWARD_EXECUTE_ON_APPROVAL"

_VERIFY_ON_PUBLISH = OnEvent(
    "ringward.package.published", "ringward.package.*",
    # the event carries the absolute package_dir and the publisher's trust root (null when it had
    # none: the flow then takes the trust root from the settings of the process running it)
    {"package_dir": "{{ event.payload.package_dir }}", "trust_root": "{{ event.payload.trust_root }}"},
)

CATALOG: tuple[Deployment, ...] = (
    # --- release -------------------------------------------------------------------------------------
    Deployment("package-release", "flows.package_release:package_release_flow",
               "Build, sign and zip a runtime release package; emits ringward.package.published.",
               ("release",)),
    Deployment("verify-package", "flows.verify_package:verify_package_flow",
               "Verify a package against the pinned trust root (one task per check family).",
               ("release", "verification")),
    Deployment("verify-package-on-publish", "flows.verify_package:verify_package_flow",
               "Verifies every package as soon as it is published.",
               ("release", "verification", "event-driven"), concurrency_limit=2, triggers=(_VERIFY_ON_PUBLISH,)),
    Deployment("verify-airgap-bundle", "flows.verify_airgap:verify_airgap_flow",
               "Verify an air-gapped bundle zip member by member (never extractall).", ("release", "air-gap")),
    Deployment("validate-upgrade", "flows.validate_upgrade:validate_upgrade_flow",
               "Refuse rollbacks, re-published versions and removed controls.", ("release", "upgrade")),
    Deployment("smoke-installers", "flows.smoke_installers:smoke_installers_flow",
               "Static installer checks and a probe of this platform's binary (--version, or the "
               "reference's stdin-JSON request under the reference profile).", ("release", "smoke")),
    # --- connectors and evidence ---------------------------------------------------------------------
    Deployment("deliver-event", "flows.deliver_event:deliver_event_flow",
               "Deliver one event to the configured SIEM/ITSM/ChatOps/fleet destinations (idempotent; "
               "evidence + dashboard artifact).",
               ("connectors", "delivery"), parameters={"config_path": Setting.CONNECTORS},
               needs=(Setting.CONNECTORS,)),
    Deployment("redeliver-failed", "flows.redeliver_failed:redeliver_failed_flow",
               "Retry failed connector deliveries inside their redelivery window; expire older ones; "
               "publish the dashboard.",
               ("connectors", "delivery", "scheduled"), concurrency_limit=1,
               parameters={"config_path": Setting.CONNECTORS, "limit": 1000}, schedules=(Interval(300),),
               needs=(Setting.CONNECTORS,)),
    Deployment("verify-evidence-chain-daily", "flows.verify_evidence_chain:verify_evidence_chain",
               "Re-walk the evidence hash chain and every bundle's checksums.txt; publish artifacts "
               "evidence-chain-verification(-summary); record the result; fail on the first break.",
               ("evidence", "audit", "scheduled"), concurrency_limit=1,
               parameters={"check_files": True, "record": True}, schedules=(Cron("15 3 * * *"),),
               note="with a signed checkpoint add parameters checkpoint + trust_root; to sign each intact head "
                    "($RINGWARD_SIGNING_KEY) and send it to the SIEM: checkpoint_dir, deliver_checkpoint_config, "
                    "checkpoint_provider"),
    Deployment("console-refresh", "flows.console:console_refresh_flow",
               "Operator console every 5 minutes: stable-key artifacts console-* (releases, channels, approvals, "
               "rollouts, fleet, escalations, incidents, deliveries, evidence) and ringward-overview linking them.",
               ("console", "scheduled"), concurrency_limit=1, schedules=(Interval(300),)),
    # --- fleet inventory -------------------------------------------------------------------------------
    Deployment("inventory-ingest", "flows.inventory_ingest:inventory_ingest_flow",
               "Normalise a Jamf / Intune / Fleet / Linux / EDR inventory export into cavra.endpoint-observations.v1 "
               "(raw payload kept as evidence; identical re-ingest is one record); emits ringward.inventory.ingested.",
               ("inventory", "ingestion")),
    Deployment("inventory-ingest-on-receive", "flows.inventory_ingest:inventory_ingest_receipt_flow",
               "Ingests each signed inventory webhook body the API stored: the event carries only the receipt id; "
               "path, provider, channel and output come from the receipt (receipts a crash left open are "
               "finished by `ringward inventory recover-webhooks`).",
               ("inventory", "ingestion", "event-driven"), concurrency_limit=4,
               triggers=(OnEvent("ringward.inventory.received", "ringward.inventory.webhook.*",
                                 {"receipt_id": "{{ event.payload.receipt_id }}"}),)),
    Deployment("inventory-automation-on-ingest", "flows.inventory_automation:inventory_automation_flow",
               "Reconciles each new ingestion against its channel's current release (package verified, always) and, "
               "on drift, opens a remediation request signed with the automation's remediation key -- or attaches "
               "to the open request for the same release, target and drift class.",
               ("inventory", "remediation", "event-driven"), concurrency_limit=1,
               parameters={"trust_root": Setting.TRUST_ROOT, "signing_key": Setting.REMEDIATION_KEY,
                           "packages": Setting.PACKAGES},
               triggers=(OnEvent("ringward.inventory.ingested", "ringward.inventory.*",
                                 {"inventory_id": "{{ event.payload.inventory_id }}",
                                  "channel": "{{ event.payload.channel }}"}),),
               needs=(Setting.TRUST_ROOT, Setting.REMEDIATION_KEY),
               note="the channel's release is its current export (channel state) found under packages by digest, "
                    "or the package $RINGWARD_CHANNEL_RELEASES / <home>/channel-releases.yaml names; the key is a "
                    "remediation-role key pinned in the trust root"),
    Deployment("inventory-reconcile", "flows.inventory_reconcile:inventory_reconcile_flow",
               "Verify a package, then reconcile observations against its signed endpoint deployment manifest "
               "(version/checksum drift, missing/unknown targets, stale hosts); drift artifacts per channel.",
               ("inventory", "reconciliation")),
    Deployment("inventory-reconcile-partitioned", "flows.inventory_reconcile:inventory_reconcile_partitioned_flow",
               "The same reconciliation partitioned across a Dask cluster (fleets beyond one machine).",
               ("inventory", "reconciliation", "dask"), parameters={"partitions": 8},
               note="a LocalCluster per run; with RINGWARD_DASK_SCHEDULER=tcp://HOST:PORT on the worker hosts, runs "
                    "use that shared Dask scheduler (the observations file on a path every Dask worker sees)"),
    Deployment("inventory-freshness", "flows.inventory_freshness:inventory_freshness_flow",
               "Inventory freshness every 15 minutes: two clocks per host, silent sources; an event and (with "
               "connectors.yaml) one connector notification only when a scope's state changes.",
               ("inventory", "freshness", "scheduled"), concurrency_limit=1,
               parameters={"max_age": "24h", "critical_age": "48h", "config_path": Setting.CONNECTORS},
               schedules=(Cron("*/15 * * * *"),),
               note="notifications need parameters.config_path (served: the home's connectors.yaml); while that file "
                    "is missing they are off and evaluation goes on"),
    *(Deployment(f"inventory-pull-{provider}", "flows.inventory_pull:inventory_pull_flow",
                 f"Hourly pull of the {tool} named in connectors.yaml (incremental after the first "
                 "read, full daily), ingested like any export; artifact inventory-pull-<provider>-<source>.",
                 ("inventory", "ingestion", "pull", "scheduled"), concurrency_limit=1,
                 parameters={"provider": provider, "config_path": Setting.CONNECTORS, "skip_unconfigured": True},
                 schedules=(Interval(3600),), needs=(Setting.CONNECTORS,),
                 note="add parameters channel / software / source as the source needs; without a source for "
                      "the provider in connectors.yaml a run ends Completed with a note")
      for provider, tool in (("jamf", "Jamf Pro computers inventory"),
                             ("intune", "Intune devices and detected apps (Microsoft Graph)"),
                             ("fleet", "Fleet hosts and software"))),
    # --- remediation SLA ------------------------------------------------------------------------------
    Deployment("sla-escalation", "flows.sla_escalation:sla_escalation_flow",
               "Remediation SLA every 5 minutes: evaluate, route, deliver, escalate, record; idempotent per "
               "schedule window (a second run or worker in the same window sends nothing).",
               ("sla", "escalation", "scheduled"), concurrency_limit=1,
               parameters={"handoffs": Setting.SLA_HANDOFFS, "policy_path": Setting.SLA_POLICY,
                           "config_path": Setting.CONNECTORS, "interval_minutes": 5},
               schedules=(Cron("*/5 * * * *"),),
               needs=(Setting.SLA_HANDOFFS, Setting.SLA_POLICY, Setting.CONNECTORS),
               note="interval_minutes must match the cron interval (it sizes the window whose run key is taken)"),
    # --- security response ----------------------------------------------------------------------------
    Deployment("incident-breaches", "flows.incidents_breaches:incident_breaches_flow",
               "Incident response clocks every 15 minutes: breached and at-risk clocks as artifacts; with "
               "config_path each notice is delivered once.",
               ("incidents", "sla", "scheduled"), concurrency_limit=1, schedules=(Cron("*/15 * * * *"),),
               note="add parameters.config_path (a connectors.yaml) to deliver each breach notice once"),
    Deployment("kev-recheck", "flows.advisories_kev:kev_recheck_flow",
               "Re-check every channel's current release against the stored KEV catalog; hold the channel and "
               "open an incident on an unresolved match.",
               ("advisories", "kev", "scheduled"), concurrency_limit=1,
               parameters={"packages": Setting.PACKAGES, "trust_root": Setting.TRUST_ROOT},
               schedules=(Cron("30 * * * *"),), needs=(Setting.PACKAGES, Setting.TRUST_ROOT),
               # a newer catalog re-checks at once (`ringward kev import` emits the event)
               triggers=(OnEvent("ringward.kev.imported", "ringward.kev.*", {}),)),
    # --- incident playbooks (on demand; a destructive step waits for its approval: run again with approval) ----
    Deployment("playbook-key-compromise", "flows.incidents_playbooks:key_compromise_flow",
               "Playbook: revoke a signing key (trust root v N+1 signed by the root role), list and re-verify what it "
               "signed, hold the affected channels, notify, open a supply-chain incident.",
               ("incidents", "playbook"), concurrency_limit=1, parameters={"trust_root": Setting.TRUST_ROOT},
               needs=(Setting.TRUST_ROOT,),
               note="give key (and root_keys once the revocation is approved); re-run with approval=<id> to resume"),
    Deployment("playbook-yank", "flows.incidents_playbooks:yank_flow",
               "Playbook: yank a release on its channels (never promoted or exported again; the high-water mark "
               "stays), hold them, reconcile the fleet against it and open remediation for hosts running it.",
               ("incidents", "playbook")),
    Deployment("playbook-unauthorized-release", "flows.incidents_playbooks:unauthorized_release_flow",
               "Playbook: versions never promoted on a channel (or from an untrusted builder or source) on its "
               "endpoints -> unauthorized-release incident and a hold on the channel.",
               ("incidents", "playbook"), parameters={"trust_root": Setting.TRUST_ROOT}, needs=(Setting.TRUST_ROOT,)),
    # --- channel promotion ---------------------------------------------------------------------------
    Deployment("request-channel-promotion", "flows.promotion_channel:request_channel_promotion_flow",
               "Sign a release-channel promotion request and open its approval; emits ringward.promotion.requested.",
               ("promotion", "channel")),
    Deployment("export-endpoint", "flows.promotion_channel:export_endpoint_flow",
               "Consume a channel promotion approval and write the Jamf/Intune/Linux endpoint export.",
               ("promotion", "channel", "endpoint")),
    Deployment("deliver-endpoint-export", "flows.promotion_channel:deliver_endpoint_export_flow",
               "Publish an endpoint export to its Jamf / Intune / Linux fleet destinations.",
               ("promotion", "endpoint", "delivery")),
    Deployment("validate-channel-upgrade", "flows.promotion_channel:validate_channel_upgrade_flow",
               "validate-upgrade against a channel's high-water mark and hold.", ("promotion", "channel", "upgrade")),
    # --- rollouts: one flow per step; the parameter `params` holds the step's options ------------------
    Deployment("rollout-capture", "flows.promotion_rollout:capture_flow",
               "Capture a rollout of a verified package.", ("rollout",)),
    Deployment("rollout-verify", "flows.promotion_rollout:verify_flow",
               "Verify a rollout directory and its package.", ("rollout",)),
    Deployment("rollout-request-promotion", "flows.promotion_rollout:request_promotion_flow",
               "Sign a rollout promotion request and open its approval; emits ringward.promotion.requested.",
               ("rollout", "promotion")),
    Deployment("rollout-execute-promotion", "flows.promotion_rollout:execute_flow",
               "Execute an approved promotion (approval consumed once); emits ringward.promotion.executed.",
               ("rollout", "promotion")),
    Deployment("rollout-request-rollback", "flows.promotion_rollout:request_rollback_flow",
               "Sign a rollback request for a recorded promotion execution and open its approval.",
               ("rollout", "rollback")),
    Deployment("rollout-rollback", "flows.promotion_rollout:rollback_flow",
               "Roll back a promotion execution (once); emits ringward.rollback.executed.", ("rollout", "rollback")),
    Deployment("rollout-audit", "flows.promotion_rollout:audit_flow",
               "Export (and with a connector config deliver) the audit event of an execution or rollback.",
               ("rollout", "audit")),
    # --- promotion automation (event-triggered; the events carry absolute paths) ----------------------
    Deployment("audit-on-promotion-executed", "flows.promotion_automation:audit_on_execution_flow",
               "Audit every promotion execution as soon as it is recorded (delivers with RINGWARD_CONNECTORS).",
               ("rollout", "audit", "event-driven"),
               triggers=(OnEvent("ringward.promotion.executed", "ringward.rollout.*",
                                 {"record_path": "{{ event.payload.execution_path }}"}),)),
    Deployment("audit-on-rollback-executed", "flows.promotion_automation:audit_on_execution_flow",
               "Audit every rollback as soon as it is recorded (delivers with RINGWARD_CONNECTORS).",
               ("rollout", "audit", "event-driven"),
               triggers=(OnEvent("ringward.rollback.executed", "ringward.rollout.*",
                                 {"record_path": "{{ event.payload.rollback_path }}"}),)),
    Deployment("execute-on-approval", "flows.promotion_automation:execute_on_approval_flow",
               "Opt-in: execute a rollout promotion as soon as its approval is approved (consumed once).",
               ("rollout", "promotion", "event-driven"), concurrency_limit=1,
               triggers=(OnEvent("ringward.approval.decided", "ringward.approval.*",
                                 {"approval_id": "{{ event.payload.approval_id }}",
                                  "action": "{{ event.payload.action }}",
                                  "state": "{{ event.payload.state }}"},
                                 opt_in_env=EXECUTE_ON_APPROVAL_ENV),),
               note="opt-in Kargo-style promotion as ringward-automation ($RINGWARD_AUTOMATION_ACTOR) with the "
                    "worker's RINGWARD_TRUST_ROOT / RINGWARD_WINDOWS; every manual check applies and the approval "
                    "is consumed once. Set the trigger's `enabled: true` (or RINGWARD_EXECUTE_ON_APPROVAL=1 for "
                    "`ringward up`) to turn it on."),
)


def by_name() -> dict[str, Deployment]:
    return {d.name: d for d in CATALOG}


def unconfigured_lines() -> list[str]:
    """One line per deployment whose schedules or triggers are off until a file exists (here, now)."""
    lines = []
    for deployment in CATALOG:
        missing = deployment.missing()
        if missing and (deployment.schedules or deployment.triggers):
            files = ", ".join(str(m.path()) for m in missing)
            lines.append(f"{deployment.name}: off until {files} exists")
    return lines
