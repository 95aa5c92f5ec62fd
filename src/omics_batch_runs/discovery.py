"""Finding batches (ListBatch) and their sizes (GetBatch), for `--all-batches` and the ETA."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from .dispatch import Dispatcher
from .errors import InvalidInput
from .service import BATCH_STATUSES


def batch_filter(
    status: str | None = None, name: str | None = None, run_group_id: str | None = None
) -> dict[str, str]:
    """ListBatch's filter: at most one of status, name and run group."""
    given = (("status", status), ("name", name), ("runGroupId", run_group_id))
    chosen = {k: v for k, v in given if v is not None}
    if len(chosen) > 1:
        raise InvalidInput(f"at most one batch filter is allowed, got {' and '.join(chosen)}")
    if status is not None and status not in BATCH_STATUSES:
        raise InvalidInput(
            f"unknown batch status {status!r}: expected one of {', '.join(BATCH_STATUSES)}"
        )
    if run_group_id is not None and not (run_group_id.isascii() and run_group_id.isdigit()):
        raise InvalidInput(f"invalid run group id {run_group_id!r}: expected digits")
    return chosen


async def list_batches(
    dispatcher: Dispatcher, filters: dict[str, str]
) -> AsyncGenerator[dict[str, Any], None]:
    """Every batch ListBatch knows of, page by page."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {"maxItems": 100, **filters}
        if token:
            params["startingToken"] = token
        response = await dispatcher.call("list_batch", params, "ListBatch")
        for item in response.get("items", ()):
            yield item
        token = response.get("nextToken") or None
        if token is None:
            return


async def total_runs(dispatcher: Dispatcher, batch_id: str) -> int | None:
    """GetBatch's totalRuns, or None if the batch cannot be read."""
    try:
        response = await dispatcher.call("get_batch", {"batchId": batch_id}, "GetBatch")
    except Exception:
        return None
    total = response.get("totalRuns")
    return int(total) if total is not None else None
