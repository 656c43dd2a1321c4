"""Prefect tasks of the ``console-refresh`` flow: one reads every console page through the domains'
operations (one store session), one publishes them as stable-key artifacts. Coarse on purpose: a
refresh is a handful of indexed reads, not worth a task per page."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ringward.operations.common.console import (
    OVERVIEW_KEY,
    Console,
    gather_console,
    overview_markdown,
    page_markdown,
    page_table,
)


@task(name="console-read", cache_policy=NO_CACHE)
def read_console(now: datetime, limit: int, scan_records: int) -> Console:
    """Every page's current state at ``now`` (a read: nothing is written to the store)."""
    from ringward.store import open_store

    with open_store() as store:
        return gather_console(store, now=now, limit=limit, scan_records=scan_records)


def _ui_url() -> str | None:
    from prefect.settings import PREFECT_UI_URL

    value = PREFECT_UI_URL.value()
    return str(value) if value else None


@task(name="console-publish", cache_policy=NO_CACHE)
def publish_console(console: Console) -> list[str]:
    """One markdown artifact per page under its stable key, its rows as a table artifact under
    ``<key>-table``, and the overview linking the pages. Returns the keys written."""
    keys = []
    for page in console.pages:
        create_markdown_artifact(key=page.key, markdown=page_markdown(page, generated_at=console.generated_at),
                                 description=f"{page.title}: {page.summary}"[:500])
        create_table_artifact(key=f"{page.key}-table", table=page_table(page),
                              description=f"{page.title} (rows)")
        keys += [page.key, f"{page.key}-table"]
    create_markdown_artifact(key=OVERVIEW_KEY, markdown=overview_markdown(console, ui_url=_ui_url()),
                             description="Ringward overview: every console page")
    return [*keys, OVERVIEW_KEY]
