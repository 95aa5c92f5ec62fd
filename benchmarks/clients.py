"""The fetchers compared, each run alone in its own process by `python -m benchmarks.clients`.

Each reads batch ids from a file, fetches every run, checks that no run came twice, and
prints one JSON line: runs, pages, wall seconds, CPU seconds, peak RSS, and the worst
event-loop lag seen (for the asyncio ones). The baselines are what a user would write.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from botocore.config import Config

# runs, pages, distinct runs (None when not checked). Only counts leave a fetcher: on
# Python 3.11, asyncio.run's signal.getsignal() builds a repr of the main task, result and
# all, and reprlib sorts a set to show it: half a second for 128,000 keys.
Result = tuple[int, int, int | None]
CHECK_DUPLICATES = True
PAGE_TIMES: list[float] = []  # wall-clock time of every page, to line processes up


def _page() -> None:
    PAGE_TIMES.append(time.time())


def _seen() -> set[tuple[str, str]]:
    return set() if CHECK_DUPLICATES else _Uncounted()


def _distinct(keys: set[tuple[str, str]]) -> int | None:
    return len(keys) if CHECK_DUPLICATES else None


class _Uncounted(set[tuple[str, str]]):
    """Stands in for the set of seen runs where holding a million keys would skew memory."""

    def add(self, _: tuple[str, str]) -> None:
        pass


def _config(**extra: Any) -> Config:
    return Config(inject_host_prefix=False, **extra)


def boto3_sequential(url: str, ids: list[str], concurrency: int) -> Result:
    """boto3's own paginator, one batch after another (default retries)."""
    import boto3

    from omics_batch_runs import add_missing_operations

    session = boto3.Session()
    add_missing_operations(session._session)
    client = session.client("omics", endpoint_url=url, config=_config())
    paginator = client.get_paginator("list_runs_in_batch")
    runs = pages = 0
    keys = _seen()
    for batch_id in ids:
        for page in paginator.paginate(batchId=batch_id):
            pages += 1
            _page()
            for run in page["runs"]:
                runs += 1
                keys.add((batch_id, run["runSettingId"]))
    return runs, pages, _distinct(keys)


async def _aiobotocore(url: str, ids: list[str], concurrency: int | None, config: Config) -> Result:
    from aiobotocore.session import get_session

    counts = [0, 0]
    keys = _seen()
    limit = asyncio.Semaphore(concurrency) if concurrency else None
    async with get_session().create_client("omics", endpoint_url=url, config=config) as client:

        async def one(batch_id: str) -> None:
            paginator = client.get_paginator("list_runs_in_batch")
            async for page in paginator.paginate(batchId=batch_id):
                counts[1] += 1
                _page()
                for run in page["runs"]:
                    counts[0] += 1
                    keys.add((batch_id, run["runSettingId"]))

        async def bounded(batch_id: str) -> None:
            if limit is None:
                await one(batch_id)
            else:
                async with limit:
                    await one(batch_id)

        await asyncio.gather(*(bounded(b) for b in ids))
    return counts[0], counts[1], _distinct(keys)


def aiobotocore_gather(url: str, ids: list[str], concurrency: int) -> Awaitable[Result]:
    """aiobotocore's paginator for every batch at once, asyncio.gather (default retries)."""
    return _aiobotocore(url, ids, None, _config())


def aiobotocore_semaphore(url: str, ids: list[str], concurrency: int) -> Awaitable[Result]:
    """The same, at most `concurrency` batches at a time (default retries)."""
    return _aiobotocore(url, ids, concurrency, _config(max_pool_connections=concurrency))


def aiobotocore_adaptive(url: str, ids: list[str], concurrency: int) -> Awaitable[Result]:
    """The same with botocore's adaptive retry mode, its client-side rate limiter."""
    config = _config(
        max_pool_connections=concurrency, retries={"mode": "adaptive", "max_attempts": 10}
    )
    return _aiobotocore(url, ids, concurrency, config)


async def omics_batch_runs(url: str, ids: list[str], concurrency: int) -> Result:
    """This project."""
    from omics_batch_runs import FetchOptions, FetchStats, open_pages

    stats = FetchStats()
    keys = _seen()
    runs = 0
    options = FetchOptions(concurrency=concurrency)
    async with open_pages(ids, options, endpoint_url=url, stats=stats) as pages:
        async for page in pages:
            _page()
            for run in page.runs:
                runs += 1
                keys.add((run["batchId"], run["runSettingId"]))
    return runs, stats.pages, _distinct(keys)


async def omics_batch_runs_sync(url: str, ids: list[str], concurrency: int) -> Result:
    """This project's first sync, into a new mirror: the export's work plus SQLite."""
    import tempfile

    from omics_batch_runs import FetchOptions, Selection, sync
    from omics_batch_runs.export import ExportProgress

    progress = ExportProgress()
    with tempfile.TemporaryDirectory() as tmp:
        options = FetchOptions(concurrency=concurrency)
        result = await sync(
            Path(tmp) / "m.db", Selection(ids), options, endpoint_url=url, progress=progress
        )
    # A run delivered twice is updated in place, not added: `added` counts distinct runs.
    return result.added, progress.stats.pages, result.added


CLIENTS: dict[str, Callable[[str, list[str], int], Any]] = {
    "omics-batch-runs": omics_batch_runs,
    "omics-batch-runs sync": omics_batch_runs_sync,
    "boto3 sequential paginator": boto3_sequential,
    "aiobotocore + gather": aiobotocore_gather,
    "aiobotocore + semaphore": aiobotocore_semaphore,
    "aiobotocore adaptive retries": aiobotocore_adaptive,
}


async def _with_lag_probe(work: Awaitable[Result]) -> tuple[Result, float]:
    """Run `work` while measuring how late a 10 ms timer fires: the loop's responsiveness."""
    worst = 0.0

    async def probe() -> None:
        nonlocal worst
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - start - 0.01)

    task = asyncio.create_task(probe())
    try:
        return await work, worst
    finally:
        task.cancel()


def main() -> None:
    # Import what every fetcher needs before the clock starts: import time is not fetching.
    import aiobotocore.session
    import boto3

    import omics_batch_runs

    del aiobotocore, boto3, omics_batch_runs
    global CHECK_DUPLICATES
    name, url, ids_file, concurrency, check = sys.argv[1:6]
    CHECK_DUPLICATES = check == "check"
    ids = Path(ids_file).read_text().split()
    fetch = CLIENTS[name]
    cpu0 = time.process_time()
    start = time.perf_counter()
    lag: float | None = None
    error = None
    runs = pages = 0
    unique: int | None = None
    try:
        outcome = fetch(url, ids, int(concurrency))
        if asyncio.iscoroutine(outcome):
            (runs, pages, unique), lag = asyncio.run(_with_lag_probe(outcome))
        else:
            runs, pages, unique = outcome
    except Exception as e:  # a baseline that gives up is a result too
        error = type(e).__name__
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = {
        "runs": runs,
        "pages": pages,
        "unique": unique,
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mb": peak_kb / 1024,
        "loop_lag_ms": None if lag is None else lag * 1000,
        "error": error,
        "page_times": PAGE_TIMES,
    }
    sys.stdout.write(orjson.dumps(line).decode() + "\n")


if __name__ == "__main__":
    main()
