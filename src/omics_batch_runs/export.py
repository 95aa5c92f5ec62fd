"""The bulk export: every run of many batches into one JSON lines sink, resumable.

Pages arrive from `iter_pages`; each is written whole, then the batch's next token is
noted. About once a second the sink is committed and, after it, the checkpoint saved, so
the checkpoint never claims a line the file does not hold. A resumed export truncates
the file to the checkpoint's size and asks each batch for the page after its token.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .checkpoint import BatchState, Checkpoint, fingerprint
from .client import open_client
from .discovery import list_batches, total_runs
from .dispatch import Dispatcher
from .errors import BatchError, OmicsBatchRunsError
from .options import FetchOptions
from .paging import Page, open_pages
from .rate import AdaptiveRate
from .sink import JsonLinesSink
from .stats import FetchStats


class OutputMissing(OmicsBatchRunsError, ValueError):
    """A checkpoint says lines were written, but the output file is gone."""


@dataclass
class ExportProgress:
    """What an export has done so far; read by the progress display and the summary."""

    stats: FetchStats = field(default_factory=FetchStats)
    batches_total: int = 0
    batches_done: int = 0
    runs_written: int = 0
    runs_expected: int = 0
    totals_known: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    failed: list[BatchError] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    complete: bool = False


@dataclass(frozen=True)
class Source:
    """Which batches: these ids, or (if `discover` is set) every batch ListBatch lists."""

    batch_ids: Sequence[str] = ()
    discover: dict[str, str] | None = None


async def run_export(
    source: Source,
    options: FetchOptions,
    output: Path | None,
    *,
    checkpoint: Path | None = None,
    progress: ExportProgress | None = None,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    want_totals: bool = False,
    commit_every: float = 1.0,
) -> ExportProgress:
    """Export; on return (or cancellation) everything written is committed and saved."""
    progress = progress if progress is not None else ExportProgress()
    state = _resume_state(checkpoint, output, options)
    async with open_client(
        session=session,
        endpoint_url=endpoint_url,
        region_name=region_name,
        pool=options.concurrency + 2,
    ) as omics:
        ids = list(source.batch_ids)
        totals: dict[str, int] = {}
        if source.discover is not None:
            with _side_dispatcher(omics, progress.stats) as lister:
                async for item in list_batches(lister, source.discover):
                    ids.append(item["id"])
                    if "totalRuns" in item:
                        totals[item["id"]] = int(item["totalRuns"])
        sink = JsonLinesSink(output, resume_at=state.offset if state.started else None)
        ids = list(dict.fromkeys(ids))
        todo = [b for b in ids if not state.batches.get(b, BatchState()).done]
        progress.batches_total = len(ids)
        progress.batches_done = progress.batches_total - len(todo)
        progress.runs_written = sum(s.lines for s in state.batches.values())
        progress.statuses, progress.reasons = state.statuses, state.reasons
        filtered = any(v is not None for v in options.filters().values())
        try:
            error: Exception | None = None
            async with anyio.create_task_group() as tg:
                if want_totals and not filtered:
                    tg.start_soon(_count_totals, omics, ids, totals, progress)
                try:
                    await _pump(omics, todo, options, sink, state, progress, commit_every)
                except Exception as e:  # raised below, not wrapped in an ExceptionGroup
                    error = e
                tg.cancel_scope.cancel()
            if error is not None:
                raise error
            progress.complete = True
        finally:
            state.offset = sink.close()
            state.save()
    return progress


def _side_dispatcher(omics: Any, stats: FetchStats) -> Dispatcher:
    """For ListBatch and GetBatch, whose quotas are their own."""
    return Dispatcher(omics, concurrency=2, rate=AdaptiveRate(), stats=stats, max_attempts=10)


def _resume_state(path: Path | None, output: Path | None, options: FetchOptions) -> Checkpoint:
    """The checkpoint to go on from (empty if new), checked before any request."""
    mark = fingerprint(
        output.resolve() if output is not None else "-",
        options.page_size,
        sorted((k, v) for k, v in options.filters().items() if v is not None),
    )
    state = Checkpoint(None, mark) if path is None else Checkpoint.load_or_new(path, mark)
    if state.started and output is not None and not output.exists():
        raise OutputMissing(f"checkpoint {path} has lines in {output}, which is gone")
    return state


def _commit(sink: JsonLinesSink, state: Checkpoint) -> None:
    state.offset = sink.commit()
    state.save()


async def _pump(
    omics: Any,
    todo: list[str],
    options: FetchOptions,
    sink: JsonLinesSink,
    state: Checkpoint,
    progress: ExportProgress,
    commit_every: float,
) -> None:
    tokens = {b: t for b in todo if (t := state.batches.get(b, BatchState()).token)}
    last_commit = time.monotonic()
    async with open_pages(
        todo,
        options,
        client=omics,
        stats=progress.stats,
        on_error=progress.failed.append,
        start_tokens=tokens,
    ) as pages:
        async for page in pages:
            _record(page, sink.write(page.runs), state, progress)
            if time.monotonic() - last_commit >= commit_every:
                _commit(sink, state)
                last_commit = time.monotonic()


def _record(page: Page, written: int, state: Checkpoint, progress: ExportProgress) -> None:
    batch = state.batches.setdefault(page.batch_id, BatchState())
    batch.lines += written
    batch.token = page.next_token
    batch.done = page.next_token is None
    progress.runs_written += written
    if batch.done:
        progress.batches_done += 1
    for run in page.runs:
        state.statuses[run.get("submissionStatus", "UNKNOWN")] += 1
        if "submissionFailureReason" in run:
            state.reasons[run["submissionFailureReason"]] += 1


async def _count_totals(
    omics: Any, ids: list[str], totals: dict[str, int], progress: ExportProgress
) -> None:
    """Sum GetBatch's totalRuns (of distinct `ids`) for the ETA, on GetBatch's own quota."""
    with _side_dispatcher(omics, FetchStats()) as getter:
        for batch_id in ids:
            total = totals.get(batch_id)
            if total is None:
                total = await total_runs(getter, batch_id)
            if total is not None:
                progress.runs_expected += total
                progress.totals_known += 1
