"""Prefect tasks around the channel promotion operations. Coarse on purpose: one task per step
(request, export, deliver, channel-aware upgrade validation), each opening the store once; no
retries -- every step is a decision, and a delivery's network retries live in the engine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ringward.core.approvals import parse_duration
from ringward.operations.promotion import channel_ops, endpoint_ops
from ringward.operations.upgrade import run_validate_upgrade_on_channel


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


@task(name="request-channel-promotion", cache_policy=NO_CACHE)
def request_channel_promotion(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any]:
    """Verify, open the approval, sign and write the request (``channel request-promotion``)."""
    with _open_store() as store:
        return channel_ops.request_channel_promotion(
            store,
            package_dir=Path(params["package_dir"]),
            channel=params["channel"],
            target_ring=params["target_ring"],
            requester=params["requester"],
            signing_key=Path(params["signing_key"]),
            trust_root=Path(params["trust_root"]),
            now=now,
            expires_in=parse_duration(params.get("expires_in") or "24h"),
            quorum=int(params.get("quorum") or 1),
            approver_group=params.get("approver_group"),
            output=Path(params["output"]) if params.get("output") else None,
            flow_run_id=flow_run_id,
        )


@task(name="export-endpoint", cache_policy=NO_CACHE)
def export_endpoint(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any]:
    """Consume the approval, raise the high-water mark, write the export (``endpoint export``)."""
    with _open_store() as store:
        return endpoint_ops.export_endpoint(
            store,
            package_dir=Path(params["package_dir"]),
            channel=params["channel"],
            provider=params.get("provider") or "all",
            promotion_request=Path(params["promotion_request"]),
            trust_root=Path(params["trust_root"]),
            actor=params["actor"],
            output=Path(params["output"]),
            windows=Path(params["windows"]) if params.get("windows") else None,
            now=now,
            flow_run_id=flow_run_id,
        )


@task(name="deliver-endpoint-export", cache_policy=NO_CACHE)
def deliver_endpoint_export(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any]:
    """Re-check the export and publish it (``endpoint deliver``); Prefect secrets resolve here."""
    from tasks.delivery import prefect_secret_lookup

    with _open_store() as store:
        return endpoint_ops.deliver_endpoint_export(
            store,
            manifest_path=Path(params["export_manifest"]),
            config_path=Path(params["config"]),
            provider=params.get("provider") or "all",
            actor=params["actor"],
            now=now,
            flow_run_id=flow_run_id,
            lookups={"prefect-secret": prefect_secret_lookup},
        )


@task(name="validate-channel-upgrade", cache_policy=NO_CACHE)
def validate_channel_upgrade(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any]:
    """``release validate-upgrade --channel``: the comparison plus the channel's persisted rules."""
    return run_validate_upgrade_on_channel(**params, flow_run_id=flow_run_id)
