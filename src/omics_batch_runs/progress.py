"""The live progress line and the final summary, on stderr."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from .export import ExportProgress


def _eta(p: ExportProgress, elapsed: float) -> str:
    if p.complete:
        return "done"
    if p.batches_total and p.totals_known == p.batches_total and p.runs_written:
        left = max(0, p.runs_expected - p.runs_written) / (p.runs_written / elapsed)
    elif p.batches_done:
        left = (p.batches_total - p.batches_done) / (p.batches_done / elapsed)
    else:
        return "ETA -:--:--"
    return f"ETA {timedelta(seconds=round(left))}"


class LiveProgress:
    """Redraws a few times a second from the export's counters while `run` runs."""

    def __init__(self, progress: ExportProgress, console: Console) -> None:
        self._p = progress
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("batches {task.fields[batches]}"),
            BarColumn(),
            TextColumn("{task.fields[runs]:,} runs"),
            TextColumn("{task.fields[rps]:.0f} req/s"),
            TextColumn("retries {task.fields[retries]:,} (throttled {task.fields[throttles]:,})"),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def _draw(self) -> None:
        p, s = self._p, self._p.stats
        elapsed = max(1e-6, time.monotonic() - p.started)
        total = f"{p.batches_total:,}" if p.batches_total else "?"
        fields: dict[str, Any] = {
            "batches": f"{p.batches_done:,}/{total}",
            "runs": p.runs_written,
            "rps": s.requests / elapsed,
            "retries": s.retries,
            "throttles": s.throttles,
            "eta": _eta(p, elapsed),
        }
        if self._task is None:
            self._task = self._bar.add_task("export", total=p.batches_total or None, **fields)
        self._bar.update(
            self._task, total=p.batches_total or None, completed=p.batches_done, **fields
        )

    async def run(self) -> None:
        with self._bar:
            try:
                while True:
                    self._draw()
                    await anyio.sleep(0.25)
            finally:
                self._draw()


def summary(p: ExportProgress, interrupted: bool) -> Table:
    """What was exported, what failed, and what it cost, as a table."""
    s = p.stats
    elapsed = time.monotonic() - p.started
    state = "interrupted (resume with the same command)" if interrupted else "complete"
    if p.failed and not interrupted:
        state = f"{len(p.failed)} batch(es) failed"
    table = Table(title=f"omics-batch-runs export: {state}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("runs written", f"{p.runs_written:,}")
    for status, n in sorted(p.statuses.items()):
        table.add_row(f"  {status}", f"{n:,}")
    if p.reasons:
        table.add_row("failed submissions by reason", "")
        for reason, n in p.reasons.most_common():
            table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("batches complete", f"{p.batches_done:,} of {p.batches_total:,}")
    table.add_row("batches failed", f"{len(p.failed):,}")
    table.add_row("requests", f"{s.requests:,}")
    table.add_row("retries", f"{s.retries:,}")
    table.add_row("  throttled", f"{s.throttles:,}")
    table.add_row("elapsed", f"{elapsed:.1f} s")
    return table
