"""The core: page ListRunsInBatch for many batches at once, as one stream.

Shape: one task feeds batch ids (deduplicated) into a channel with no buffer; a fixed
pool of workers takes a batch at a time and follows its token chain, page after page;
pages meet in one small channel that the generator reads. A slow reader fills that
channel and the workers wait, so memory stays flat however many batches there are.

Workers never raise into the task group: a batch's failure travels down the channel
like a page. The generator therefore never has its own task cancelled while it is
suspended at `yield`, the classic hazard of an async generator that owns a task group.
"""

from __future__ import annotations

import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from botocore.exceptions import BotoCoreError, ClientError

from .client import open_client
from .dispatch import Dispatcher, error_code
from .options import FetchOptions, InvalidInput, check_batch_id
from .rate import AdaptiveRate
from .stats import FetchStats

logger = logging.getLogger("omics_batch_runs")

BatchIds = Iterable[str | int] | AsyncIterable[str | int]


@dataclass(frozen=True)
class Page:
    """One ListRunsInBatch page. `next_token` is None on a batch's last page."""

    batch_id: str
    runs: list[dict[str, Any]]
    next_token: str | None


class BatchError(Exception):
    """A batch that failed for good: not found, access denied, or retries exhausted."""

    def __init__(self, batch_id: str, error: BaseException) -> None:
        self.batch_id = batch_id
        self.error = error
        self.code = error_code(error)
        super().__init__(f"batch {batch_id}: {self.code}: {_message(error)}")


class BatchesFailed(Exception):
    """Raised at the end of a fetch when some batches failed and no `on_error` was given."""

    def __init__(self, errors: Sequence[BatchError]) -> None:
        self.errors = list(errors)
        names = ", ".join(e.batch_id for e in self.errors[:5])
        more = f" and {len(self.errors) - 5} more" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} batch(es) failed: {names}{more}")


def _message(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(error)
    return str(error)


@dataclass(frozen=True)
class _Crash:
    """An unexpected error in a worker, to be raised by the generator itself."""

    error: Exception


async def _as_async(source: BatchIds) -> AsyncIterator[str | int]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item
            await anyio.lowlevel.checkpoint()


async def _unique_ids(source: BatchIds) -> AsyncGenerator[str, None]:
    """Checked ids, each once. Remembers ids as ints: about 70 bytes per distinct batch."""
    seen: set[int] = set()
    async for raw in _as_async(source):
        batch_id = check_batch_id(raw)
        if int(batch_id) not in seen:
            seen.add(int(batch_id))
            yield batch_id


async def iter_pages(
    batch_ids: BatchIds,
    options: FetchOptions | None = None,
    *,
    client: Any = None,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    rate: AdaptiveRate | None = None,
    stats: FetchStats | None = None,
    on_error: Callable[[BatchError], None] | None = None,
    start_tokens: Mapping[str, str] | None = None,
) -> AsyncGenerator[Page, None]:
    """Pages of every batch, each batch's in order, batches interleaved.

    `start_tokens` resumes batches from a saved token. Failures: see `iter_runs`.
    Break out early only inside `contextlib.aclosing(...)`, so that the work stops here.
    """
    options = options if options is not None else FetchOptions()
    if isinstance(batch_ids, (str, bytes)):
        raise InvalidInput("batch_ids must be an iterable of ids, not a single string")
    if isinstance(batch_ids, Sequence):
        batch_ids = [check_batch_id(b) for b in batch_ids]  # all checked before any request
    stats = stats if stats is not None else FetchStats()
    rate = rate if rate is not None else AdaptiveRate(options.max_rps)
    resume = dict(start_tokens or {})
    workers = 2 * options.concurrency  # spares, so that backing-off batches leave no slot idle
    failures: list[BatchError] = []

    async with open_client(
        client=client,
        session=session,
        endpoint_url=endpoint_url,
        region_name=region_name,
        pool=options.concurrency,
    ) as omics:
        dispatcher = Dispatcher(
            omics,
            concurrency=options.concurrency,
            rate=rate,
            stats=stats,
            max_attempts=options.max_attempts,
            backoff=options.backoff,
        )

        async def feed(ids_out: ObjectSendStream[str], out: ObjectSendStream[Any]) -> None:
            async with ids_out, out:
                try:
                    async with aclosing(_unique_ids(batch_ids)) as ids:
                        async for batch_id in ids:
                            await ids_out.send(batch_id)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                except Exception as exc:
                    await out.send(_Crash(exc))

        async def page_batch(batch_id: str, out: ObjectSendStream[Any]) -> None:
            stats.batches_started += 1
            token = resume.get(batch_id)
            while True:
                params = options.request(batch_id, token)
                try:
                    response = await dispatcher.call(
                        "list_runs_in_batch", params, f"ListRunsInBatch batch {batch_id}"
                    )
                except (ClientError, BotoCoreError) as exc:  # anything else is a bug: crash
                    stats.batches_failed += 1
                    await out.send(BatchError(batch_id, exc))
                    return
                runs = [{"batchId": batch_id, **run} for run in response.get("runs", ())]
                token = response.get("nextToken") or None
                stats.pages += 1
                stats.runs += len(runs)
                if token is None:
                    stats.batches_done += 1
                await out.send(Page(batch_id, runs, token))
                if token is None:
                    return

        async def work(ids_in: ObjectReceiveStream[str], out: ObjectSendStream[Any]) -> None:
            async with ids_in, out:
                try:
                    async for batch_id in ids_in:
                        await page_batch(batch_id, out)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the reader has gone: nothing left to do
                except Exception as exc:
                    await out.send(_Crash(exc))

        out, results = anyio.create_memory_object_stream[Any](options.concurrency)
        ids_out, ids_in = anyio.create_memory_object_stream[str](0)
        # Nothing is raised inside the task group (it would come out wrapped in an
        # ExceptionGroup): the error is kept, the workers cancelled, and it is raised after.
        stop: BaseException | None = None
        async with results, anyio.create_task_group() as tg:
            tg.start_soon(feed, ids_out, out.clone())
            for _ in range(workers):
                tg.start_soon(work, ids_in.clone(), out.clone())
            ids_in.close()
            out.close()
            async for item in results:
                if isinstance(item, Page):
                    try:
                        yield item
                    except GeneratorExit as closing:  # aclose(): stop the workers first
                        stop = closing
                        break
                elif isinstance(item, BatchError):
                    logger.info("%s", item)
                    if options.fail_fast:
                        stop = item
                        break
                    if on_error is not None:
                        on_error(item)
                    else:
                        failures.append(item)
                else:
                    stop = item.error
                    break
            tg.cancel_scope.cancel()
        if stop is not None:
            raise stop
    if failures:
        raise BatchesFailed(failures)


async def iter_runs(
    batch_ids: BatchIds,
    *,
    client: Any = None,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    concurrency: int = 16,
    page_size: int = 100,
    submission_status: str | None = None,
    run_setting_id: str | None = None,
    run_id: str | None = None,
    max_rps: float | None = None,
    max_attempts: int = 10,
    backoff: float = 0.1,
    fail_fast: bool = False,
    on_error: Callable[[BatchError], None] | None = None,
    stats: FetchStats | None = None,
    rate: AdaptiveRate | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Every run of every batch, as ListRunsInBatch returned it, plus its `batchId`.

    A batch that fails for good does not stop the others. By default its `BatchError` is
    collected and `BatchesFailed` is raised after the last run; with `on_error`, each
    goes to that callback instead and nothing is raised; with `fail_fast`, the first one
    stops everything and is raised at once.
    """
    options = FetchOptions(
        concurrency=concurrency,
        page_size=page_size,
        submission_status=submission_status,
        run_setting_id=run_setting_id,
        run_id=run_id,
        max_rps=max_rps,
        max_attempts=max_attempts,
        backoff=backoff,
        fail_fast=fail_fast,
    )
    pages = iter_pages(
        batch_ids,
        options,
        client=client,
        session=session,
        endpoint_url=endpoint_url,
        region_name=region_name,
        rate=rate,
        stats=stats,
        on_error=on_error,
    )
    async with aclosing(pages):
        async for page in pages:
            for run in page.runs:
                yield run
