"""The core: page ListRunsInBatch for many batches at once, as one stream.

Shape: one task feeds batch ids (deduplicated) into a channel with no buffer; a fixed
pool of workers takes a batch at a time and follows its token chain, page after page;
pages meet in one small channel that the reader drains. A slow reader fills that channel
and the workers wait, so memory stays flat however many batches there are.

Where the tasks live: in a task of the fetch's own (its runner), started when the stream
is opened, and stopped and awaited when it is closed. The reader's task never holds a
cancel scope of this package while it is suspended between two items, so nothing that
happens to it there (a `break`, an outer timeout or cancel, the garbage collector closing
the generator from another task) can meet one: PEP 789's hazard cannot arise. Workers
never raise into their task group either: failures travel down the channel like pages,
and are raised in the reader's task, as themselves.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    SSOError,
    TokenRetrievalError,
)

from .client import check_endpoint_url, open_client
from .dispatch import Dispatcher, check_client
from .errors import BatchError, BatchesFailed, InvalidInput, UnsupportedEventLoop
from .options import FetchOptions, check_batch_id
from .rate import AdaptiveRate
from .stats import FetchStats

logger = logging.getLogger("omics_batch_runs")

BatchIds = Iterable[str | int] | AsyncIterable[str | int]
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


_NO_CREDENTIALS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    SSOError,
    TokenRetrievalError,
)


@dataclass(frozen=True)
class Page:
    """One ListRunsInBatch page. `next_token` is None on a batch's last page; `token` is
    the one it was asked for with (None for a first page): asked again, it gives this page,
    grown, as a batch still submitting adds runs."""

    batch_id: str
    runs: list[dict[str, Any]]
    next_token: str | None
    token: str | None = None


@dataclass(frozen=True)
class _Crash:
    """An error of the whole fetch (a bug, a client that cannot be made), raised by the reader."""

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


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UnsupportedEventLoop(
            "omics-batch-runs needs asyncio (aiobotocore runs on asyncio only): "
            "use asyncio.run() or anyio.run(..., backend='asyncio')"
        ) from None


class PageStream:
    """The pages of one fetch: an async context manager, and inside it an async iterator.

    Leaving the `async with` block, however it is left, stops every request and waits for
    the fetch's tasks to end. Made by `open_pages`.
    """

    def __init__(
        self,
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
    ) -> None:
        self.options = options if options is not None else FetchOptions()
        if isinstance(batch_ids, (str, bytes)) or not isinstance(
            batch_ids, (Iterable, AsyncIterable)
        ):
            raise InvalidInput(f"batch_ids must be an iterable of ids, not {batch_ids!r:.40}")
        if isinstance(batch_ids, Sequence):
            batch_ids = [check_batch_id(b) for b in batch_ids]  # all checked before any request
        if client is not None:
            check_client(client)
        if endpoint_url is not None:
            check_endpoint_url(endpoint_url)
        if on_error is not None and (
            not callable(on_error) or inspect.iscoroutinefunction(on_error)
        ):
            # An async one would be called and never awaited: its failures lost unseen.
            raise InvalidInput(f"on_error must be a plain function, not {on_error!r:.60}")
        if on_error is not None and self.options.fail_fast:
            raise InvalidInput("give on_error or fail_fast, not both: one says go on, one stop")
        self.stats = stats if stats is not None else FetchStats()
        self._ids = batch_ids
        self._client_args: dict[str, Any] = {
            "client": client,
            "session": session,
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "pool": self.options.concurrency,
        }
        if rate is not None and not isinstance(rate, AdaptiveRate):
            raise InvalidInput(f"rate must be an AdaptiveRate, not {type(rate).__name__}")
        if rate is not None and self.options.max_rps is not None:
            raise InvalidInput("give the cap to the AdaptiveRate passed as rate, not max_rps too")
        self._rate = rate if rate is not None else AdaptiveRate(self.options.max_rps)
        self._on_error = on_error
        self._resume = dict(start_tokens or {})
        self._failures: list[BatchError] = []
        # Made on entry, not here: a stream never entered holds nothing to close.
        self._receive: MemoryObjectReceiveStream[Page | BatchError | _Crash] | None = None
        self._scope: anyio.CancelScope | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False

    async def __aenter__(self) -> PageStream:
        loop = _running_loop()
        if self._runner is not None or self._stopped:
            raise RuntimeError("a PageStream can be entered once")
        send, self._receive = anyio.create_memory_object_stream[Page | BatchError | _Crash](
            self.options.concurrency
        )
        self._scope = anyio.CancelScope()
        self._runner = loop.create_task(self._run(self._scope, send), name="omics-batch-runs fetch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def stop(self) -> None:
        """Stop every request now, without waiting (safe from a finaliser)."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()
        if self._receive is not None:
            self._receive.close()

    async def aclose(self) -> None:
        """Stop, and wait until the fetch's tasks have ended and its client is closed."""
        self.stop()
        if self._runner is not None:
            # Shielded: an outer cancel must not leave the runner unawaited.
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._runner])

    def __aiter__(self) -> PageStream:
        return self

    async def __anext__(self) -> Page:
        if self._receive is None:
            raise RuntimeError("use the stream inside `async with`")
        while True:
            try:
                item = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if self._failures:
                    failures, self._failures = self._failures, []
                    raise BatchesFailed(failures) from None
                raise StopAsyncIteration from None
            if isinstance(item, Page):
                return item
            if isinstance(item, _Crash):
                raise item.error
            logger.info("%s", item)
            if self.options.fail_fast:
                raise item
            if self._on_error is not None:
                self._on_error(item)  # what it raises ends the fetch, as itself
            else:
                self._failures.append(item)

    async def _run(
        self, scope: anyio.CancelScope, send: MemoryObjectSendStream[Page | BatchError | _Crash]
    ) -> None:
        async with send:  # closed at the end: the reader then sees the end of the stream
            try:
                async with open_client(**self._client_args) as omics:
                    # The client is opened and closed outside the scope `stop` cancels, so
                    # that it is always closed, whatever stopped the fetch.
                    with (
                        scope,
                        Dispatcher(
                            omics,
                            concurrency=self.options.concurrency,
                            rate=self._rate,
                            stats=self.stats,
                            max_attempts=self.options.max_attempts,
                            backoff=self.options.backoff,
                        ) as dispatcher,
                    ):
                        await self._work(dispatcher, send)
            except Exception as exc:  # an error of the whole fetch: the reader raises it
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await send.send(_Crash(exc))  # unless nobody is reading any more

    async def _work(
        self, dispatcher: Dispatcher, out: MemoryObjectSendStream[Page | BatchError | _Crash]
    ) -> None:
        ids_out, ids_in = anyio.create_memory_object_stream[str](0)
        workers = 2 * self.options.concurrency  # spares: batches backing off leave no slot idle
        if isinstance(self._ids, Sequence):
            workers = max(1, min(workers, len(self._ids)))  # never more than there are batches
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._feed, ids_out, out.clone())
            for _ in range(workers):
                tg.start_soon(self._worker, dispatcher, ids_in.clone(), out.clone())
            ids_in.close()

    async def _feed(self, ids_out: ObjectSendStream[str], out: ObjectSendStream[Any]) -> None:
        async with ids_out, out:
            try:
                async with aclosing(_unique_ids(self._ids)) as ids:
                    async for batch_id in ids:
                        await ids_out.send(batch_id)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except Exception as exc:  # a bad id in a stream, or the stream's own error
                await out.send(_Crash(exc))

    async def _worker(
        self,
        dispatcher: Dispatcher,
        ids_in: ObjectReceiveStream[str],
        out: ObjectSendStream[Any],
    ) -> None:
        async with ids_in, out:
            try:
                async for batch_id in ids_in:
                    await self._page_batch(dispatcher, batch_id, out)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the reader has gone: nothing left to do
            except Exception as exc:  # a bug, or no credentials: crash the fetch, once
                await out.send(_Crash(exc))

    async def _page_batch(
        self, dispatcher: Dispatcher, batch_id: str, out: ObjectSendStream[Any]
    ) -> None:
        stats, options = self.stats, self.options
        stats.batches_started += 1
        token = self._resume.get(batch_id)
        while True:
            params = options.request(batch_id, token)
            try:
                response = await dispatcher.call(
                    "list_runs_in_batch", params, f"ListRunsInBatch batch {batch_id}"
                )
            except _NO_CREDENTIALS:
                raise  # no batch can be read: not one failure a batch, thousands of times
            except (ClientError, BotoCoreError) as exc:  # anything else is a bug: crash
                stats.batches_failed += 1
                await out.send(BatchError(batch_id, exc))
                return
            runs = [{"batchId": batch_id, **run} for run in response.get("runs", ())]
            asked, token = token, response.get("nextToken") or None
            stats.pages += 1
            stats.runs += len(runs)
            if token is None:
                stats.batches_done += 1
            await out.send(Page(batch_id, runs, token, asked))
            if token is None:
                return


class RunStream:
    """The runs of one fetch, page after page: like `PageStream`, one run at a time."""

    def __init__(self, pages: PageStream) -> None:
        self.pages = pages
        self._runs: Iterator[dict[str, Any]] = iter(())

    @property
    def stats(self) -> FetchStats:
        return self.pages.stats

    async def __aenter__(self) -> RunStream:
        await self.pages.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.pages.aclose()

    def stop(self) -> None:
        self.pages.stop()

    async def aclose(self) -> None:
        await self.pages.aclose()

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        for run in self._runs:
            return run
        while True:
            page = await self.pages.__anext__()
            if page.runs:
                self._runs = iter(page.runs[1:])
                return page.runs[0]


def open_pages(
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
) -> PageStream:
    """Pages of every batch, each batch's in order, batches interleaved: `async with` it.

    `start_tokens` resumes batches from a saved token. Failures: see `open_runs`.
    """
    return PageStream(
        batch_ids,
        options,
        client=client,
        session=session,
        endpoint_url=endpoint_url,
        region_name=region_name,
        rate=rate,
        stats=stats,
        on_error=on_error,
        start_tokens=start_tokens,
    )


def open_runs(
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
) -> RunStream:
    """Every run of every batch, as ListRunsInBatch returned it, plus its `batchId`.

    `async with open_runs(ids) as runs: async for run in runs: ...`: leaving the block
    stops the fetch, the structured way to stop early. A batch that fails for good does
    not stop the others. By default its `BatchError` is collected and `BatchesFailed` is
    raised after the last run; with `on_error`, each goes to that callback instead and
    nothing is raised (what the callback raises ends the fetch); with `fail_fast`, the
    first one stops everything and is raised at once.
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
    pages = open_pages(
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
    return RunStream(pages)


class _Stream(Protocol[T_co]):
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: Any) -> None: ...
    def __aiter__(self) -> AsyncIterator[T_co]: ...
    def stop(self) -> None: ...


async def _drain(stream: _Stream[T]) -> AsyncGenerator[T, None]:
    async with stream:
        async for item in stream:
            yield item


def _generator(opener: Callable[P, _Stream[T]], doc: str) -> Callable[P, AsyncGenerator[T, None]]:
    """An async generator over what `opener` streams, with `opener`'s parameters.

    Safe to abandon: the stream is entered and closed inside the generator, and its tasks
    live in a task of their own, so the generator holds no cancel scope across `yield`.
    Abandoned without `aclose` (a plain `break`, an exception in the loop body), it is
    finalised as soon as it is unreachable: a weak reference stops the fetch on the spot,
    before anything else runs, and the event loop's finaliser then closes it in a task of
    its own, which waits for the fetch's tasks to end.
    """

    @functools.wraps(opener)
    def make(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[T, None]:
        stream = opener(*args, **kwargs)  # input is checked here, before any request
        generator = _drain(stream)
        weakref.finalize(generator, stream.stop).atexit = False
        return generator

    make.__name__ = make.__qualname__ = opener.__name__.replace("open_", "iter_")
    make.__doc__ = doc
    return make


iter_pages = _generator(
    open_pages,
    """Pages of every batch, as an async generator; `open_pages` is the structured form.

    Stop early with `aclose()` (or `contextlib.aclosing`), or just `break`: see the README.
    """,
)
iter_runs = _generator(
    open_runs,
    """Every run of every batch, as an async generator; `open_runs` is the structured form.

    Stop early with `aclose()` (or `contextlib.aclosing`), or just `break`: see the README.
    Failures are reported as `open_runs` says.
    """,
)
