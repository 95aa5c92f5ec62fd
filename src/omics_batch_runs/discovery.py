"""Finding batches (ListBatch) and describing them (GetBatch): the calls beside the listing."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from .dispatch import Dispatcher
from .errors import InvalidInput
from .options import FetchOptions
from .rate import AdaptiveRate
from .service import BATCH_STATUSES
from .stats import FetchStats


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


def side_dispatcher(omics: Any, stats: FetchStats, options: FetchOptions) -> Dispatcher:
    """For ListBatch, GetBatch and ListRuns, each on a quota of its own: a rate of its own."""
    return Dispatcher(
        omics,
        concurrency=2,
        rate=AdaptiveRate(),
        stats=stats,
        max_attempts=options.max_attempts,
        backoff=options.backoff,
    )


async def pages(
    dispatcher: Dispatcher, operation: str, params: dict[str, Any], what: str
) -> AsyncGenerator[dict[str, Any], None]:
    """Each answer of a paginated operation, following its nextToken to the end."""
    token: str | None = None
    while True:
        asked = {**params, "startingToken": token} if token else params
        response = await dispatcher.call(operation, asked, what)
        yield response
        token = response.get("nextToken") or None
        if token is None:
            return


async def list_batches(
    dispatcher: Dispatcher, filters: dict[str, str]
) -> AsyncGenerator[dict[str, Any], None]:
    """Every batch ListBatch knows of, page by page."""
    async for response in pages(
        dispatcher, "list_batch", {"maxItems": 100, **filters}, "ListBatch"
    ):
        for item in response.get("items", ()):
            yield item


async def total_runs(dispatcher: Dispatcher, batch_id: str) -> int | None:
    """GetBatch's totalRuns, or None if the batch cannot be read."""
    try:
        response = await dispatcher.call("get_batch", {"batchId": batch_id}, "GetBatch")
    except Exception:
        return None
    total = response.get("totalRuns")
    return int(total) if total is not None else None
