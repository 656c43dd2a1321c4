"""Shared flow helpers: current flow-run id, result artifacts, events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import State
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Completed, Failed


def current_flow_run_id() -> str | None:
    value = flow_run.get_id()
    return str(value) if value else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def publish_result(key: str, title: str, result: dict[str, Any]) -> None:
    """A markdown summary and a table of check families, under stable artifact keys."""
    valid = bool(result.get("valid"))
    lines = [f"# {title}", "", f"**{'VALID' if valid else 'INVALID'}**", ""]
    for error in result.get("errors", [])[:50]:
        lines.append(f"- `{error['code']}` {error['message']}")
    for warning in result.get("warnings", [])[:20]:
        lines.append(f"- warning: {warning}")
    evidence = result.get("evidence")
    if evidence:
        lines += ["", f"Evidence record `{evidence['evidence_id']}` in `{evidence['bundle_dir']}`"]
    create_markdown_artifact(markdown="\n".join(lines), key=key, description=title)
    families = result.get("families")
    if families:
        create_table_artifact(
            table=[{"family": f["family"], "status": f["status"], "checked": len(f["checked"]),
                    "errors": "; ".join(e["message"] for e in f["errors"])[:500]} for f in families],
            key=f"{key}-families",
            description=f"{title}: check families",
        )


def emit(name: str, resource_id: str, payload: dict[str, Any]) -> None:
    emit_event(event=name, resource={"prefect.resource.id": resource_id}, payload=payload)


def unwrap(state: State) -> Any:
    """The data of a task or flow state, whether it completed or failed with data; a crash
    (an exception) is re-raised."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, BaseException):
        raise value
    return value


def final_state(result: dict[str, Any], title: str) -> State:
    """Completed for a valid result, Failed (with the same data) for a verified-and-invalid one,
    so the run list in the UI shows which packages failed."""
    if result.get("valid", True):
        return Completed(message=f"{title}: VALID", data=result)
    first = (result.get("errors") or [{"message": "invalid"}])[0]["message"]
    return Failed(message=f"{title}: INVALID ({first[:200]})", data=result)


def run_flow(flow: Any, **parameters: Any) -> dict[str, Any]:
    """Call a flow and return its result dict even when it ends Failed (invalid package). A refused
    step (a run that ended Failed carrying ``{"refused": true, ...}``) is re-raised as its own error
    class -- the same one-line error and exit code as in-process. No reachable Prefect API is one
    line naming PREFECT_API_URL within seconds; the engine's console tracebacks stay off the
    terminal (the run's logs still reach the UI)."""
    from prefect.settings import PREFECT_API_URL

    from ringward.operations.common.prefect_cli import quiet_prefect_console, require_prefect_api

    require_prefect_api(PREFECT_API_URL.value())
    with quiet_prefect_console():
        result = dict(unwrap(flow(**parameters, return_state=True)))
    if result.get("refused"):
        from tasks.promotion_channel import raise_refusal

        raise_refusal(result)
    return result


def connectors_config(config_path: str | None) -> str:
    """The connector configuration a run uses: the parameter, else the settings of the process running
    the flow (``$RINGWARD_CONNECTORS`` or ``$RINGWARD_HOME/connectors.yaml``), so a deployment from
    prefect.yaml (which leaves the parameter to the worker) runs without it."""
    if config_path:
        return config_path
    from ringward import settings
    from ringward.core.errors import InputError

    configured = settings.configured_connectors()
    if configured is None:
        raise InputError(f"config_path: required (a parameter, or {settings.connectors_path()} "
                         f"from ${settings.CONNECTORS_ENV} / $RINGWARD_HOME where the flow runs)")
    return str(configured)
