"""Channel status (high-water mark, current release, hold, rollback allowance): the read-only view,
kept apart from ``channel_ops`` so `ringward channel status` does not load package verification and
signing to print a table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ringward.core.promotion.channels import check_channel_name

if TYPE_CHECKING:
    from ringward.store import Store

STATUS_SCHEMA = "ringward.channel-status.v1"


def channel_status(store: Store, channel: str | None = None) -> dict[str, Any]:
    from ringward.store.promotion.channel_repo import ChannelRepository

    repo = ChannelRepository(store)
    states = [repo.get(check_channel_name(channel))] if channel is not None else repo.list()
    return {"schema_version": STATUS_SCHEMA, "channels": [s.to_document() for s in states]}
