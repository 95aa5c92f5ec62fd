"""The live progress line and the final summary, on stderr."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from .errors import BatchError
from .export import ExportProgress
from .failures import Failure
from .logs import json_line, redact
from .sync import SyncResult

_WINDOW = 10.0  # seconds of history behind the rates shown
_SMOOTHING = 0.1  # share of a new estimate taken into the ETA at each redraw


class Pace:
    """Rates over the last few seconds (not since the start, which hides a slowdown), and
    an ETA smoothed so that it moves steadily instead of jumping with every page."""

    def __init__(self, window: float = _WINDOW) -> None:
        self._window = window
        self._samples: deque[tuple[float, int, float]] = deque()
        self._eta: float | None = None
        self.rps = 0.0

    def update(self, now: float, requests: int, done: float, left: float | None) -> None:
        """`done` counts the work done so far, `left` what remains (None: not known yet)."""
        self._samples.append((now, requests, done))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()
        then, requests_then, done_then = self._samples[0]
        span = now - then
        if span <= 0:
            return
        self.rps = (requests - requests_then) / span
        speed = (done - done_then) / span
        if left is None or speed <= 0:
            return
        estimate = left / speed
        if self._eta is None:
            self._eta = estimate
        else:
            elapsed_since = now - self._samples[-2][0] if len(self._samples) > 1 else 0.0
            self._eta = max(0.0, self._eta - elapsed_since)  # the clock runs down...
            self._eta += _SMOOTHING * (estimate - self._eta)  # ...and news moves it gently

    @property
    def eta(self) -> float | None:
        return self._eta


def work_left(p: ExportProgress, counting_totals: bool) -> tuple[float, float | None]:
    """Work done and left: in runs once every batch's size is known (GetBatch), else in
    batches; while sizes are still being counted, nothing is estimated, so the basis of
    the ETA never changes under it."""
    if p.batches_total is None:
        return 0.0, None
    if counting_totals:
        if p.totals_known < p.batches_total:
            return float(p.runs_written), None
        return float(p.runs_written), float(max(0, p.runs_expected - p.runs_written))
    return float(p.batches_done), float(p.batches_total - p.batches_done)


class LiveProgress:
    """Redraws a few times a second from the export's counters while `run` runs."""

    def __init__(self, progress: ExportProgress, console: Console, counting_totals: bool) -> None:
        self._p = progress
        self._counting_totals = counting_totals
        self._pace = Pace()
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

    def _draw(self, now: float | None = None) -> None:
        p, s = self._p, self._p.stats
        done, left = work_left(p, self._counting_totals)
        self._pace.update(time.monotonic() if now is None else now, s.requests, done, left)
        eta = self._pace.eta
        if p.complete:
            shown = "done"
        elif eta is None:
            shown = "ETA -:--:--"
        else:
            shown = f"ETA {timedelta(seconds=round(eta))}"
        total = f"{p.batches_total:,}" if p.batches_total is not None else "?"
        fields: dict[str, Any] = {
            "batches": f"{p.batches_done:,}/{total}",
            "runs": p.runs_written,
            "rps": self._pace.rps,
            "retries": s.retries,
            "throttles": s.throttles,
            "eta": shown,
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


def summary(p: ExportProgress, state: str) -> dict[str, Any]:
    """What was exported, what failed, and what it cost."""
    return {
        "state": state,
        "runs_written": p.runs_written,
        "runs_by_submission_status": dict(sorted(p.statuses.items())),
        "failed_submissions_by_reason": dict(p.reasons.most_common()),
        "batches_complete": p.batches_done,
        "batches_total": p.batches_total or 0,
        "batches_failed": len(p.failed),
        "requests": p.stats.requests,
        "retries": p.stats.retries,
        "throttled": p.stats.throttles,
        "elapsed_s": round(time.monotonic() - p.started, 1),
    }


def summary_lines(s: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("runs written", f"{s['runs_written']:,}")]
    rows += [(f"  {k}", f"{n:,}") for k, n in s["runs_by_submission_status"].items()]
    if s["failed_submissions_by_reason"]:
        rows.append(("failed submissions by reason", ""))
        rows += [(f"  {k}", f"{n:,}") for k, n in s["failed_submissions_by_reason"].items()]
    rows += [
        ("batches complete", f"{s['batches_complete']:,} of {s['batches_total']:,}"),
        ("batches failed", f"{s['batches_failed']:,}"),
        ("requests", f"{s['requests']:,}"),
        ("retries", f"{s['retries']:,}"),
        ("  throttled", f"{s['throttled']:,}"),
        ("elapsed", f"{s['elapsed_s']:.1f} s"),
    ]
    return rows


def sync_summary(result: SyncResult, p: ExportProgress, state: str) -> dict[str, Any]:
    """What a sync listed and skipped, what changed in the mirror, and what it cost."""
    return {
        "state": state,
        "batches": result.batches,
        "batches_settled": result.settled,
        "batches_listed": result.listed,
        "batches_skipped": result.skipped,
        "batches_deleted_upstream": result.deleted,
        "batches_failed": len(result.failed),
        "runs_added": result.added,
        "runs_changed": result.changed,
        "runs_mirrored": p.runs_written,
        "execution_statuses_changed": result.executions_changed,
        "requests": result.requests,
        "requests_total": sum(result.requests.values()),
        "full_export_requests": result.export_requests,
        "retries": p.stats.retries,
        "throttled": p.stats.throttles,
        "elapsed_s": round(time.monotonic() - p.started, 1),
    }


def sync_lines(s: dict[str, Any]) -> list[tuple[str, str]]:
    requests = ", ".join(f"{op} {n:,}" for op, n in s["requests"].items() if n)
    return [
        ("batches settled", f"{s['batches_settled']:,} of {s['batches']:,}"),
        ("  listed", f"{s['batches_listed']:,}"),
        ("  unchanged, not listed", f"{s['batches_skipped']:,}"),
        ("  deleted upstream (kept)", f"{s['batches_deleted_upstream']:,}"),
        ("  failed", f"{s['batches_failed']:,}"),
        ("runs added", f"{s['runs_added']:,}"),
        ("runs changed", f"{s['runs_changed']:,}"),
        ("runs mirrored", f"{s['runs_mirrored']:,}"),
        ("execution statuses new or changed", f"{s['execution_statuses_changed']:,}"),
        ("requests", f"{s['requests_total']:,} ({requests or 'none'})"),
        ("  a full export would send", f"{s['full_export_requests']:,}"),
        ("retries", f"{s['retries']:,} (throttled {s['throttled']:,})"),
        ("elapsed", f"{s['elapsed_s']:.1f} s"),
    ]


class Report:
    """What the command says at its end, on stderr: text (a table on a terminal, plain
    unwrapped lines off one), or with `json` one JSON object a line, like the logs."""

    def __init__(self, console: Console, *, json: bool) -> None:
        self.console = console
        self.json = json

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def line(self, level: str, message: str) -> None:
        self._print(json_line(level, message) if self.json else f"{level}: {redact(message)}")

    def summary(self, s: dict[str, Any], command: str = "export") -> None:
        title = f"omics-batch-runs {command}: {s['state']}"
        if self.json:
            self._print(json_line("info", title, summary=s))
            return
        rows = sync_lines(s) if command == "sync" else summary_lines(s)
        if self.console.is_terminal:
            table = Table(title=title, show_header=False, box=None)
            table.add_column(style="bold")
            table.add_column(justify="right")
            for name, value in rows:
                table.add_row(name, value)
            self.console.print(table)
        else:
            self._print(title)
            for name, value in rows:
                self._print(f"{name}: {value}" if value else name)

    def failed(self, failure: BatchError) -> None:
        message = f"failed: {failure}"
        if self.json:
            self._print(json_line("error", message, batch_id=failure.batch_id, code=failure.code))
        else:
            self._print(redact(message))


def failures_table(found: Sequence[Failure]) -> Table:
    """Failures grouped by stage and reason, most first, with a few runSettingIds each."""
    groups: dict[tuple[str, str], list[Failure]] = {}
    for f in found:
        groups.setdefault((f.stage, f.reason), []).append(f)
    table = Table(title=f"{len(found):,} run(s) did not make it")
    for column in ("stage", "reason", "runs", "batches", "examples"):
        table.add_column(column, justify="right" if column in ("runs", "batches") else "left")
    for (stage, reason), members in sorted(groups.items(), key=lambda g: -len(g[1])):
        examples = ", ".join(f"{m.batch_id}/{m.run_setting_id}" for m in members[:3])
        batches = len({m.batch_id for m in members})
        table.add_row(stage, reason, f"{len(members):,}", f"{batches:,}", examples)
    return table
