from collections import Counter

from rich.console import Console

from omics_batch_runs.export import ExportProgress
from omics_batch_runs.progress import LiveProgress, _eta, summary


def render(table: object) -> str:
    console = Console(width=100, record=True)
    console.print(table)
    return console.export_text()


def test_summary_has_statuses_reasons_and_costs() -> None:
    p = ExportProgress(batches_total=3, batches_done=3, runs_written=5)
    p.statuses = Counter({"SUCCESS": 4, "FAILED": 1})
    p.reasons = Counter({"ValidationException": 1})
    p.stats.retries, p.stats.throttles = 7, 2
    text = render(summary(p, interrupted=False))
    for expected in ("complete", "SUCCESS", "ValidationException", "3 of 3", "7"):
        assert expected in text
    assert "interrupted" in render(summary(p, interrupted=True))


def test_eta_from_totals_or_batches() -> None:
    p = ExportProgress(batches_total=10, batches_done=5, totals_known=10)
    p.runs_expected, p.runs_written = 1000, 500
    assert _eta(p, elapsed=10.0) == "ETA 0:00:10"
    p.totals_known = 3
    assert _eta(p, elapsed=10.0) == "ETA 0:00:10"
    assert _eta(ExportProgress(batches_total=10), elapsed=1.0) == "ETA -:--:--"


def test_the_live_line_draws_before_and_after_the_batches_are_known() -> None:
    console = Console(width=160, record=True, force_terminal=True)
    p = ExportProgress()
    live = LiveProgress(p, console)
    with live._bar:
        live._draw()  # nothing known yet: ids still being discovered
        p.batches_total, p.batches_done, p.runs_written = 40, 12, 3_456
        p.stats.retries, p.stats.throttles = 5, 2
        live._draw()
    text = console.export_text()
    assert "batches 0/?" in text
    assert "batches 12/40" in text and "3,456 runs" in text and "throttled 2" in text
