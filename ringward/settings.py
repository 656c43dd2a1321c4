"""Where Ringward keeps its state. Every location can be overridden by environment variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path


def ringward_home() -> Path:
    """State directory: ``$RINGWARD_HOME`` or ``./.ringward``."""
    return Path(os.environ.get("RINGWARD_HOME") or Path.cwd() / ".ringward")


def database_url() -> str:
    """``$RINGWARD_DATABASE_URL`` or a SQLite file in the state directory."""
    url = os.environ.get("RINGWARD_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{ringward_home() / 'ringward.db'}"


def evidence_root() -> Path:
    """Root of evidence bundles: ``$RINGWARD_EVIDENCE_ROOT`` or ``<home>/evidence``."""
    value = os.environ.get("RINGWARD_EVIDENCE_ROOT")
    return Path(value) if value else ringward_home() / "evidence"


#: Prefect 3.9's outbound telemetry switches: the server's startup analytics
#: (``server.analytics_enabled``), the SDK's import-time analytics (``DO_NOT_TRACK``, read by
#: ``prefect._internal.analytics``) and Cloud orchestration telemetry (inert without Cloud, off anyway).
#: Forced in every process Ringward runs or starts: Ringward never phones home.
PREFECT_TELEMETRY_OFF: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
}

#: environment variables naming the files a deployment needs before it can run unattended
TRUST_ROOT_ENV = "RINGWARD_TRUST_ROOT"
CONNECTORS_ENV = "RINGWARD_CONNECTORS"
SLA_HANDOFFS_ENV = "RINGWARD_SLA_HANDOFFS"
SLA_POLICY_ENV = "RINGWARD_SLA_POLICY"
PACKAGES_ENV = "RINGWARD_PACKAGES"
#: the shared Dask scheduler of ``inventory-reconcile-partitioned`` (``tcp://host:port``)
DASK_SCHEDULER_ENV = "RINGWARD_DASK_SCHEDULER"
_DASK_ADDRESS = re.compile(r"tcp://(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")


def _from_env_or_home(variable: str, file_name: str) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser().absolute() if value else ringward_home().absolute() / file_name


def trust_root_path() -> Path:
    """The pinned trust root unattended runs use: ``$RINGWARD_TRUST_ROOT`` or ``<home>/trust-root.json``
    (it may not exist yet: see :func:`configured_trust_root`)."""
    return _from_env_or_home(TRUST_ROOT_ENV, "trust-root.json")


def configured_trust_root() -> Path | None:
    """:func:`trust_root_path` when that file exists, else None."""
    path = trust_root_path()
    return path if path.is_file() else None


def connectors_path() -> Path:
    """The connector configuration unattended runs use: ``$RINGWARD_CONNECTORS`` or
    ``<home>/connectors.yaml`` (it may not exist yet: see :func:`configured_connectors`)."""
    return _from_env_or_home(CONNECTORS_ENV, "connectors.yaml")


def configured_connectors() -> Path | None:
    """:func:`connectors_path` when that file exists, else None."""
    path = connectors_path()
    return path if path.is_file() else None


def sla_handoffs_path() -> Path:
    """Remediation handoff records the scheduled SLA run reads: ``$RINGWARD_SLA_HANDOFFS`` or
    ``<home>/remediation-handoffs``."""
    return _from_env_or_home(SLA_HANDOFFS_ENV, "remediation-handoffs")


def sla_policy_path() -> Path:
    """The SLA routing/escalation policy: ``$RINGWARD_SLA_POLICY`` or ``<home>/sla-routing.yaml``."""
    return _from_env_or_home(SLA_POLICY_ENV, "sla-routing.yaml")


def packages_path() -> Path:
    """Where released packages are kept for scheduled re-checks (KEV): ``$RINGWARD_PACKAGES`` or
    ``<home>/packages``."""
    return _from_env_or_home(PACKAGES_ENV, "packages")


def dask_scheduler(environ: Mapping[str, str] | None = None) -> str | None:
    """The Dask scheduler the partitioned reconciliation's runs use on this host: ``$RINGWARD_DASK_SCHEDULER``
    (``tcp://HOST:PORT``), None when unset or empty (each run then starts a ``LocalCluster`` of its own).
    Anything else is refused in one line (``InputError``)."""
    value = (os.environ if environ is None else environ).get(DASK_SCHEDULER_ENV, "").strip()
    if not value:
        return None
    found = _DASK_ADDRESS.fullmatch(value)
    if found is None or not 1 <= int(found["port"]) <= 65535:
        from ringward.core.errors import InputError

        raise InputError(f"{DASK_SCHEDULER_ENV}={value[:200]!r}: expected tcp://HOST:PORT of a running Dask scheduler "
                         "(e.g. tcp://10.0.0.5:8786); unset it for a LocalCluster per run")
    return value


def prefect_home() -> Path:
    """Where ``ringward up`` keeps its embedded Prefect server (SQLite database, profiles):
    ``<home>/prefect``."""
    return ringward_home().absolute() / "prefect"


def logs_dir() -> Path:
    """Log files of the processes ``ringward up`` supervises: ``<home>/logs``."""
    return ringward_home().absolute() / "logs"


def up_state_path() -> Path:
    """What a running ``ringward up`` publishes about itself (URLs, process ids) for ``ringward status``."""
    return ringward_home().absolute() / "up.json"
