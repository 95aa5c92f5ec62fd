import io
import itertools
from collections import Counter

import orjson
from rich.console import Console

from omics_batch_runs.errors import BatchError
from omics_batch_runs.export import ExportProgress
from omics_batch_runs.progress import LiveProgress, Pace, Report, summary, work_left


def sample_progress() -> ExportProgress:
    p = ExportProgress(batches_total=3, batches_done=3, runs_written=5)
    p.statuses = Counter({"SUCCESS": 4, "FAILED": 1})
    p.reasons = Counter({"ValidationException": 1})
    p.stats.retries, p.stats.throttles = 7, 2
    return p


def test_summary_on_a_terminal_is_a_table() -> None:
    console = Console(file=io.StringIO(), width=100, record=True, force_terminal=True)
    Report(console, json=False).summary(summary(sample_progress(), "complete"))
    text = console.export_text()
    for expected in ("complete", "SUCCESS", "ValidationException", "3 of 3", "7"):
        assert expected in text


def test_off_a_terminal_nothing_is_wrapped() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40, soft_wrap=True)  # a narrow pipe
    report = Report(console, json=False)
    report.summary(summary(sample_progress(), "1 batch(es) failed"))
    long = "x" * 200
    report.failed(BatchError("7", ValueError(long)))
    lines = out.getvalue().splitlines()
    assert f"failed: batch 7: ValueError: {long}" in lines
    assert "batches complete: 3 of 3" in lines


def test_with_json_logs_every_line_is_one_object() -> None:
    out = io.StringIO()
    report = Report(Console(file=out, width=40, soft_wrap=True), json=True)
    report.line("warning", "no batch matched --all-batches")
    report.summary(summary(sample_progress(), "complete"))
    report.failed(BatchError("7", ValueError("gone")))
    entries = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [e["level"] for e in entries] == ["WARNING", "INFO", "ERROR"]
    assert entries[1]["summary"]["runs_by_submission_status"] == {"FAILED": 1, "SUCCESS": 4}
    assert entries[2]["batch_id"] == "7"


def test_requests_per_second_are_over_a_recent_window() -> None:
    pace = Pace(window=10.0)
    for t in range(31):  # 100 req/s for 20 s, then 10 req/s
        requests = 100 * min(t, 20) + 10 * max(0, t - 20)
        pace.update(float(t), requests, 0, None)
    assert pace.rps == 10.0  # an average since the start would say 67


def test_the_eta_counts_down_steadily_and_takes_news_gently() -> None:
    pace = Pace(window=10.0)
    etas = []
    for t in range(60):  # 10 units/s of 1,000; one second at 100/s at t=30
        done = 10 * t + (90 if t >= 31 else 0)
        pace.update(float(t), 0, done, 1000 - done)
        etas.append(pace.eta)
    assert etas[0] is None and etas[5] is not None
    changes = [b - a for a, b in itertools.pairwise(etas[5:])]  # type: ignore[operator]
    # The burst is 9 s of work in one: without smoothing the ETA would drop 10 s at once,
    # then rise 5 s when the burst leaves the window. It moves at most 5 s a second here.
    assert all(-5 < change < 1 for change in changes)
    assert changes[:20] == [-1.0] * 20  # steady work: it just counts down


def test_work_is_counted_in_runs_once_every_size_is_known_else_in_batches() -> None:
    p = ExportProgress(batches_total=10, batches_done=4, runs_written=500, runs_expected=2000)
    assert work_left(p, counting_totals=False) == (4.0, 6.0)
    p.totals_known = 3
    assert work_left(p, counting_totals=True) == (500.0, None)  # sizes still coming in
    p.totals_known = 10
    assert work_left(p, counting_totals=True) == (500.0, 1500.0)
    assert work_left(ExportProgress(), counting_totals=False) == (0.0, None)


def test_the_live_line_draws_before_and_after_the_batches_are_known() -> None:
    console = Console(width=160, record=True, force_terminal=True)
    p = ExportProgress()
    live = LiveProgress(p, console, counting_totals=False)
    with live._bar:
        live._draw(now=0.0)  # nothing known yet: ids still being discovered
        p.batches_total, p.batches_done, p.runs_written = 40, 12, 3_456
        p.stats.retries, p.stats.throttles, p.stats.requests = 5, 2, 50
        live._draw(now=2.0)
    text = console.export_text()
    assert "batches 0/?" in text
    assert "batches 12/40" in text and "3,456 runs" in text and "throttled 2" in text
    assert "25 req/s" in text and "ETA 0:00:05" in text
