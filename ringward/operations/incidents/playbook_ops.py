"""What ``ringward playbook ...`` and the playbook flows call: plain parameters (what a CLI option or
a flow parameter carries) -> the run's identifying inputs and options -> the engine.

Both front doors go through :func:`context`, :func:`prepare`, then either :func:`run` (in-process:
every step in order) or the flow's tasks (:func:`start`, :func:`advance_step`, :func:`finish_run`),
so the two paths write the same evidence for the same parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ringward.core.approvals.rules import parse_duration
from ringward.core.errors import InputError
from ringward.core.incidents.playbooks import PlaybookKind, parse_kind
from ringward.operations.incidents import playbook_runs as engine
from ringward.operations.incidents.playbook_runs import Context, Handlers

if TYPE_CHECKING:
    from ringward.store import Store

DEFAULT_ACTOR: Final = "ringward-playbook"


def handlers(kind: PlaybookKind) -> Handlers:
    from ringward.operations.incidents import playbook_key_compromise, playbook_unauthorized, playbook_yank

    return {PlaybookKind.KEY_COMPROMISE: playbook_key_compromise.HANDLERS, PlaybookKind.YANK: playbook_yank.HANDLERS,
            PlaybookKind.UNAUTHORIZED_RELEASE: playbook_unauthorized.HANDLERS}[kind]


def _path(value: Any, option: str, *, required: bool = False) -> Path | None:
    if value in (None, ""):
        if required:
            raise InputError(f"{option}: required")
        return None
    return Path(str(value)).expanduser().absolute()


def _file(value: Any, option: str, *, required: bool = False) -> str | None:
    path = _path(value, option, required=required)
    if path is None:
        return None
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory, expected a file")
    if not path.is_file():
        raise InputError(f"{option} {path}: file not found")
    return str(path)


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def context(store: Store, params: Mapping[str, Any], *, now: datetime, flow_run_id: str | None = None) -> Context:
    return Context(store=store, now=now, actor=str(params.get("actor") or DEFAULT_ACTOR),
                   approval_id=params.get("approval") or None, flow_run_id=flow_run_id,
                   expires_in=parse_duration(str(params.get("expires_in") or "24h")))


def prepare(ctx: Context, kind: PlaybookKind, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the parameters and derive (identifying inputs, options) for ``kind``.

    Raises:
        InputError: naming the option, expected vs found.
    """
    reason = params.get("reason")
    if reason is not None and (not str(reason).strip() or len(str(reason)) > 1000):
        raise InputError("--reason: expected one line of at most 1000 characters")
    options: dict[str, Any] = {"reason": reason, "time_overridden": bool(params.get("time_overridden"))}
    if kind is PlaybookKind.KEY_COMPROMISE:
        from ringward.operations.incidents import playbook_key_compromise as kc

        trust_root = _file(params.get("trust_root"), "--trust-root", required=True)
        assert trust_root is not None
        key = str(params.get("key") or "")
        if not key.strip():
            raise InputError("--key: expected a key id, key-id prefix (>= 8 hex) or label")
        inputs = kc.inputs(trust_root=Path(trust_root), key=key)
        from ringward.settings import configured_connectors

        connectors = _file(params.get("connectors"), "--connectors") or configured_connectors()
        options.update(root_keys=[_file(k, "--root-key") for k in _list(params.get("root_keys"))],
                       connectors=str(connectors) if connectors else None,
                       providers=str(params.get("providers") or "all"))
        return inputs, options
    if kind is PlaybookKind.YANK:
        from ringward.operations.incidents import playbook_yank as yk

        version = str(params.get("version") or "")
        if not version:
            raise InputError("--version: required")
        replacement = _path(params.get("replacement"), "--replacement")
        remediation_key = _file(params.get("remediation_key"), "--remediation-key")
        # the trust root serves the reconciliation and the remediation requests only
        trust_root = _file(params.get("trust_root"), "--trust-root") if replacement is not None else None
        package = _path(params.get("package"), "--package")
        if replacement is not None and (remediation_key is None or trust_root is None):
            raise InputError("--replacement: reconciling against it and opening remediation needs --trust-root and "
                             "--remediation-key too")
        if replacement is not None and not replacement.is_dir():
            raise InputError(f"--replacement {replacement}: not a package directory")
        if package is not None and not package.is_dir():
            raise InputError(f"--package {package}: not a package directory")
        inputs = yk.inputs(ctx.store, version=version, digest=params.get("digest") or None,
                           channels=_list(params.get("channels")))
        options.update(replacement=str(replacement) if replacement else None, remediation_key=remediation_key,
                       trust_root=trust_root, package=str(package) if package else None)
        return inputs, options
    from ringward.operations.incidents import playbook_unauthorized as ua

    trust_root = _file(params.get("trust_root"), "--trust-root", required=True)
    channel = str(params.get("channel") or "")
    if not channel:
        raise InputError("--channel: required")
    packages = ua.package_digests([Path(p).expanduser().absolute() for p in _list(params.get("packages"))])
    inputs = ua.inputs(ctx.store, channel=channel, observations=_path(params.get("observations"), "--observations"),
                       packages=list(packages.values()), trusted_sources=_list(params.get("trusted_sources")))
    options.update(trust_root=trust_root, packages={k: str(v) for k, v in packages.items()})
    return inputs, options


def run(store: Store, playbook: str, params: Mapping[str, Any], *, now: datetime,
        flow_run_id: str | None = None) -> dict[str, Any]:
    """In-process: prepare, start (or find) the run, advance it until it completes or awaits approval."""
    kind = parse_kind(playbook)
    ctx = context(store, params, now=now, flow_run_id=flow_run_id)
    inputs, options = prepare(ctx, kind, params)
    ctx.options = options
    return engine.run_playbook(ctx, kind, inputs, handlers(kind))


def start(store: Store, playbook: str, params: Mapping[str, Any], *, now: datetime,
          flow_run_id: str | None = None) -> dict[str, Any]:
    """The flow's first task: the run (created or found) and its steps to go through."""
    from ringward.core.incidents.playbooks import step_names

    kind = parse_kind(playbook)
    ctx = context(store, params, now=now, flow_run_id=flow_run_id)
    inputs, _ = prepare(ctx, kind, params)
    run_record, created = engine.start_run(ctx, kind, inputs)
    return {"run_id": run_record.run_id, "created": created, "steps": list(step_names(kind))}


def advance_step(store: Store, playbook: str, params: Mapping[str, Any], run_id: str, step: str, *, now: datetime,
                 flow_run_id: str | None = None) -> dict[str, Any]:
    """One step of a run (a flow task): ``stop`` true when the run waits for an approval here."""
    kind = parse_kind(playbook)
    ctx = context(store, params, now=now, flow_run_id=flow_run_id)
    _, options = prepare(ctx, kind, params)
    ctx.options = options
    advanced = engine.advance(ctx, run_id, step, handlers(kind))
    return {"run_id": run_id, "step": step, "status": advanced.status.value, "stop": advanced.stop,
            "changed": advanced.changed, "approval_used": ctx.approval_used}


def finish_run(store: Store, params: Mapping[str, Any], run_id: str, *, approval_used: bool, now: datetime,
               flow_run_id: str | None = None) -> dict[str, Any]:
    ctx = context(store, params, now=now, flow_run_id=flow_run_id)
    ctx.approval_used = approval_used
    return engine.finish(ctx, run_id)


def status(store: Store, run_id: str | None = None) -> dict[str, Any]:
    return engine.status(store, run_id)
