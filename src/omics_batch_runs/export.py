"""The bulk export: every run of many batches into one JSON lines sink, resumable.

Pages arrive from `open_pages`; each is written whole, then the batch's next token is
noted. About once a second the sink is committed and, after it, the checkpoint saved, so
the checkpoint never claims a line the file does not hold. A resumed export truncates
the file to the checkpoint's size and asks each batch for the page after its token.

A saved token the service no longer accepts: that batch is listed again from its first
page, and the runs the output already holds for it (found by reading the output) are not
written again, so every run is there once, whether the listing order held or not.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson

from .checkpoint import BatchState, Checkpoint, Job
from .client import open_client
from .discovery import list_batches, side_dispatcher, total_runs
from .errors import BatchError
from .options import FetchOptions, Selection
from .paging import Page, open_pages
from .sink import JsonLinesSink, OutputRefused, open_sink
from .stats import FetchStats

logger = logging.getLogger("omics_batch_runs")


@dataclass
class ExportProgress:
    """What an export has done so far; read by the progress display and the summary."""

    stats: FetchStats = field(default_factory=FetchStats)
    batches_total: int | None = None  # None until the batches are known
    batches_done: int = 0
    runs_written: int = 0
    runs_expected: int = 0
    totals_known: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    failed: list[BatchError] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    complete: bool = False


def prepare(
    source: Selection, options: FetchOptions, output: str, checkpoint: Path | None
) -> tuple[Checkpoint, JsonLinesSink]:
    """Check the checkpoint and open the output, before any request; raises if either fails."""
    filters = {k: v for k, v in options.filters().items() if v is not None}
    out = "-" if output == "-" else str(Path(output).resolve())
    job = Job.of(out, source.batch_ids, source.discover, filters, options.page_size)
    if checkpoint is None:
        state = Checkpoint(None, job)
    else:
        if out != "-" and checkpoint.resolve() == Path(out):
            raise OutputRefused("the output and the checkpoint must be different files")
        state = Checkpoint.load_or_new(checkpoint, job)
    resume_at = state.offset if state.started else None
    return state, open_sink(output, resume_at=resume_at, checkpoint=checkpoint is not None)


async def run_export(
    source: Selection,
    options: FetchOptions,
    output: str = "-",
    *,
    checkpoint: Path | None = None,
    progress: ExportProgress | None = None,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    want_totals: bool = False,
    commit_every: float = 1.0,
    prepared: tuple[Checkpoint, JsonLinesSink] | None = None,
) -> ExportProgress:
    """Export `source` into `output` ('-': stdout, else a path; '.gz' compresses).

    On return, or cancellation, or a failed batch, what was written is committed and the
    checkpoint saved; after a failed write (OutputError), nothing more is committed.
    """
    progress = progress if progress is not None else ExportProgress()
    state, sink = prepared or prepare(source, options, output, checkpoint)
    try:
        async with open_client(
            session=session,
            endpoint_url=endpoint_url,
            region_name=region_name,
            pool=options.concurrency + 2,
        ) as omics:
            ids = list(source.batch_ids)
            totals: dict[str, int] = {}
            if source.discover is not None:
                with side_dispatcher(omics, progress.stats, options) as lister:
                    async for item in list_batches(lister, source.discover):
                        ids.append(item["id"])
                        if "totalRuns" in item:
                            totals[item["id"]] = int(item["totalRuns"])
            ids = list(dict.fromkeys(ids))
            todo = [b for b in ids if not state.batches.get(b, BatchState()).done]
            progress.batches_total = len(ids)
            progress.batches_done = len(ids) - len(todo)
            progress.runs_written = sum(s.lines for s in state.batches.values())
            progress.statuses, progress.reasons = state.statuses, state.reasons
            filtered = any(v is not None for v in options.filters().values())
            try:
                error: Exception | None = None
                async with anyio.create_task_group() as tg:
                    if want_totals and not filtered:
                        tg.start_soon(_count_totals, omics, ids, totals, progress, options)
                    try:
                        await _Pump(omics, options, sink, state, progress, commit_every).run(todo)
                    except Exception as e:  # raised below, not wrapped in an ExceptionGroup
                        error = e
                    tg.cancel_scope.cancel()
                if error is not None:
                    raise error
                progress.complete = True
            finally:
                if not sink.broken:
                    with anyio.CancelScope(shield=True):  # an interrupt still saves
                        await _commit(sink, state)
    finally:
        sink.close()
    return progress


async def _commit(sink: JsonLinesSink, state: Checkpoint) -> None:
    state.offset = await sink.commit()
    await state.save()


class _Pump:
    """Pages into the sink, with commits; batches whose saved token is refused go again."""

    def __init__(
        self,
        omics: Any,
        options: FetchOptions,
        sink: JsonLinesSink,
        state: Checkpoint,
        progress: ExportProgress,
        commit_every: float,
    ) -> None:
        self.omics, self.options, self.sink = omics, options, sink
        self.state, self.progress, self.commit_every = state, progress, commit_every

    def _batch(self, batch_id: str) -> BatchState:
        return self.state.batches.setdefault(batch_id, BatchState())

    async def run(self, todo: list[str]) -> None:
        while todo:
            todo = await self._pass(todo)

    async def _pass(self, todo: list[str]) -> list[str]:
        """One pass over `todo`; returns the batches to list again from their first page."""
        batches = {b: self._batch(b) for b in todo}
        tokens = {b: s.token for b, s in batches.items() if s.token}
        # A batch part-written with no token left (it was restarted) skips what it holds.
        partial = {b for b, s in batches.items() if s.lines and not s.token}
        skip: dict[str, set[str]] = {}
        if partial:  # read back off the event loop: the output may be large
            await _commit(self.sink, self.state)
            skip = await anyio.to_thread.run_sync(_written, self.sink.name, partial)
        again: list[str] = []

        def on_error(error: BatchError) -> None:
            if error.batch_id in tokens and error.code == "ValidationException":
                logger.warning(
                    "the service refused the saved token of batch %s (%s); listing it again "
                    "from its first page, without the runs already written",
                    error.batch_id,
                    error,
                )
                batches[error.batch_id].token = None
                again.append(error.batch_id)
            else:
                self.progress.failed.append(error)

        last_commit = time.monotonic()
        async with open_pages(
            todo,
            self.options,
            client=self.omics,
            stats=self.progress.stats,
            on_error=on_error,
            start_tokens=tokens,
        ) as pages:
            async for page in pages:
                runs = page.runs
                if page.batch_id in skip:
                    seen = skip[page.batch_id]
                    runs = [r for r in runs if r.get("runSettingId") not in seen]
                self._record(page, runs, self.sink.write(runs))
                if time.monotonic() - last_commit >= self.commit_every:
                    await _commit(self.sink, self.state)
                    last_commit = time.monotonic()
        return again

    def _record(self, page: Page, runs: list[dict[str, Any]], written: int) -> None:
        batch, progress = self._batch(page.batch_id), self.progress
        batch.lines += written
        batch.token = page.next_token
        batch.done = page.next_token is None
        progress.runs_written += written
        if batch.done:
            progress.batches_done += 1
        for run in runs:
            self.state.statuses[run.get("submissionStatus", "UNKNOWN")] += 1
            if "submissionFailureReason" in run:
                self.state.reasons[run["submissionFailureReason"]] += 1


def _written(output: str, batch_ids: set[str]) -> dict[str, set[str]]:
    """The runSettingIds the output already holds for these batches."""
    found: dict[str, set[str]] = {b: set() for b in batch_ids}
    for line in _lines(output):
        run = orjson.loads(line)
        if run.get("batchId") in found:
            found[run["batchId"]].add(run.get("runSettingId"))
    return found


def _lines(output: str) -> Iterator[bytes]:
    with open(output, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(output, "rb") as f:
        yield from f


async def _count_totals(
    omics: Any,
    ids: list[str],
    totals: dict[str, int],
    progress: ExportProgress,
    options: FetchOptions,
) -> None:
    """Sum GetBatch's totalRuns (of distinct `ids`) for the ETA, on GetBatch's own quota."""
    with side_dispatcher(omics, FetchStats(), options) as getter:
        for batch_id in ids:
            total = totals.get(batch_id)
            if total is None:
                total = await total_runs(getter, batch_id)
            if total is not None:
                progress.runs_expected += total
                progress.totals_known += 1
