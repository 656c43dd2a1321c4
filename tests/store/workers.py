"""Functions run in separate processes by the concurrency tests (importable by forkserver)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from multiprocessing.context import BaseContext
from typing import Any

from ringward.core.approvals.rules import Decision
from ringward.core.errors import RingwardError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import open_store


def context() -> BaseContext:
    """forkserver with the store preloaded: children start fast and share no connections."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.store.workers"])
    return ctx


def run_parallel(target: Callable[..., Any], args_list: Sequence[tuple[Any, ...]], timeout: float = 240) -> list[Any]:
    """Run ``target(queue, barrier, *args)`` in one process per args tuple; returns their results."""
    ctx = context()
    queue = ctx.Queue()
    barrier = ctx.Barrier(len(args_list))
    procs = [ctx.Process(target=target, args=(queue, barrier, *args)) for args in args_list]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=timeout)
        assert proc.exitcode == 0, f"worker exited with {proc.exitcode}"
    return results


def append_worker(queue: Any, barrier: Any, url: str, count: int, tag: int) -> None:
    try:
        with open_store(url) as store:
            barrier.wait()
            for i in range(count):
                store.append(
                    EvidenceDraft(
                        kind="concurrency-test",
                        actor=f"proc-{tag}",
                        subject=EvidenceSubject(status=f"p{tag}"),
                        payload={"proc": tag, "i": i},
                    )
                )
        queue.put(("ok", tag))
    except Exception as exc:  # report instead of dying silently
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def open_worker(queue: Any, barrier: Any, url: str) -> None:
    try:
        barrier.wait()
        with open_store(url) as store:
            queue.put(("ok", store.head().last_id))
    except Exception as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def decide_worker(queue: Any, barrier: Any, url: str, approval_id: str, actor: str, decision: str) -> None:
    try:
        with open_store(url) as store:
            barrier.wait()
            try:
                approval, _ = store.approvals.decide(
                    approval_id, actor=actor, decision=Decision(decision), reason="parallel test", now=_now()
                )
                queue.put(("ok", actor, approval.state.value))
            except RingwardError as exc:
                queue.put(("refused", actor, exc.code))
    except Exception as exc:
        queue.put(("error", actor, f"{type(exc).__name__}: {exc}"))


def consume_worker(
    queue: Any, barrier: Any, url: str, approval_id: str, action: str, digest: str, target: str, actor: str
) -> None:
    try:
        with open_store(url) as store:
            barrier.wait()
            try:
                store.approvals.consume(
                    approval_id, action=action, subject_digest=digest, target=target, actor=actor, now=_now()
                )
                queue.put(("ok", actor, None))
            except RingwardError as exc:
                queue.put(("refused", actor, exc.code))
    except Exception as exc:
        queue.put(("error", actor, f"{type(exc).__name__}: {exc}"))


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
