"""`ringward run FLOW --params JSON`: run any pipeline as a tracked Prefect flow run."""

from __future__ import annotations

import importlib
import inspect
import json
import os
from typing import Any

import typer

from ringward.cli.output import print_json
from ringward.core.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run a pipeline as a tracked Prefect flow run.")

#: flow name -> "module:function"
FLOWS = {
    "package-release": "flows.package_release:package_release_flow",
    "verify-package": "flows.verify_package:verify_package_flow",
    "verify-airgap-bundle": "flows.verify_airgap:verify_airgap_flow",
    "validate-upgrade": "flows.validate_upgrade:validate_upgrade_flow",
    "smoke-installers": "flows.smoke_installers:smoke_installers_flow",
    "verify-evidence-chain": "flows.verify_evidence_chain:verify_evidence_chain",
    "deliver-event": "flows.deliver_event:deliver_event_flow",
    "redeliver-failed": "flows.redeliver_failed:redeliver_failed_flow",
    "request-channel-promotion": "flows.promotion_channel:request_channel_promotion_flow",
    "export-endpoint": "flows.promotion_channel:export_endpoint_flow",
    "deliver-endpoint-export": "flows.promotion_channel:deliver_endpoint_export_flow",
    "validate-channel-upgrade": "flows.promotion_channel:validate_channel_upgrade_flow",
    # the rollout step flows take one parameter, `params` (the step's options, as in `rollout --prefect`)
    "rollout-capture": "flows.promotion_rollout:capture_flow",
    "rollout-verify": "flows.promotion_rollout:verify_flow",
    "rollout-request-promotion": "flows.promotion_rollout:request_promotion_flow",
    "rollout-execute-promotion": "flows.promotion_rollout:execute_flow",
    "rollout-request-rollback": "flows.promotion_rollout:request_rollback_flow",
    "rollout-rollback": "flows.promotion_rollout:rollback_flow",
    "rollout-audit": "flows.promotion_rollout:audit_flow",
    "rollout-audit-on-execution": "flows.promotion_automation:audit_on_execution_flow",
    "rollout-execute-on-approval": "flows.promotion_automation:execute_on_approval_flow",
}


@app.command()
def run(
    flow_name: str = typer.Argument(..., help=f"One of: {', '.join(sorted(FLOWS))}."),
    params: str = typer.Option("{}", "--params", help="Flow parameters as a JSON object."),
) -> None:
    """Run FLOW with --params; prints the flow's JSON result; exit 1 when it reports invalid."""
    if flow_name not in FLOWS:
        raise InputError(f"FLOW: unknown flow {flow_name!r}; expected one of {', '.join(sorted(FLOWS))}")
    try:
        parameters = json.loads(params)
    except json.JSONDecodeError as exc:
        raise InputError(f"--params: invalid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(parameters, dict):
        raise InputError("--params: expected a JSON object")
    if os.environ.get("PREFECT_API_URL"):
        # before importing Prefect and the flow (seconds): an unreachable server is one line, fast
        from ringward.operations.common.prefect_cli import require_prefect_api

        require_prefect_api(os.environ["PREFECT_API_URL"])
    from ringward.operations.common.prefect_rest import TELEMETRY_OFF

    for variable, value in TELEMETRY_OFF.items():
        os.environ.setdefault(variable, value)  # before Prefect's import-time analytics
    module_name, function = FLOWS[flow_name].split(":")
    from flows._common import run_flow

    flow = getattr(importlib.import_module(module_name), function)
    _check_parameters(flow, parameters)
    from prefect.exceptions import ParameterBindError, ParameterTypeError

    try:
        result = run_flow(flow, **parameters)  # a refused step is re-raised as its one-line error
    except (ParameterBindError, ParameterTypeError) as exc:  # Prefect validates the types: still --params
        raise InputError(f"--params: {' '.join(str(exc).split())}") from None
    print_json(result)
    # release flows report `valid`, delivery flows `success`
    ok = result.get("valid", result.get("success", True))
    raise typer.Exit(0 if ok else 1)


def _check_parameters(flow: Any, parameters: dict[str, Any]) -> None:
    """Unknown or missing parameters are bad input, named before any flow run is created."""
    signature = inspect.signature(flow.fn)
    unknown = sorted(set(parameters) - set(signature.parameters))
    if unknown:
        raise InputError(f"--params: {flow.name} takes no {', '.join(unknown)}; expected some of "
                         f"{', '.join(signature.parameters)}")
    missing = [name for name, p in signature.parameters.items() if p.default is p.empty and name not in parameters]
    if missing:
        raise InputError(f"--params: {flow.name} needs {', '.join(missing)}")
