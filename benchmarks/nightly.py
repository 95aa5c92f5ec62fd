"""The nightly refresh: a full export against `sync` of a mirror in which 1% changed.

Each repeat: a fresh emulator of N batches; a first sync into a new mirror; then 1% of the
batches change upstream (cancelled, runs deleted, deleted, new ones started); then a
re-sync of that mirror, and a full export of the same batches, both as the command a
nightly job would run. Requests are counted by the emulator; wall time includes starting
the command. At the documented 10 requests/s quota, requests are what a refresh costs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def _post(url: str) -> Any:
    request = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(request) as answer:
        return orjson.loads(answer.read())


def _served(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_emulator/counters?reset=1") as answer:
        return dict(orjson.loads(answer.read())["requests"])


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, timeout=1800)
    return time.perf_counter() - start


def _change_one_percent(url: str, batches: list[dict[str, Any]]) -> int:
    """Cancel, delete the runs of, and delete 1% of the batches, and start as many anew."""
    n = max(4, len(batches) // 100)
    running = [b["id"] for b in batches if b["status"] == "INPROGRESS"]
    done = [b["id"] for b in batches if b["status"] == "PROCESSED"]
    for batch_id in running[: n // 4]:
        _post(f"{url}/_emulator/batches/{batch_id}/cancel")
    for batch_id in done[: n // 4]:
        _post(f"{url}/_emulator/batches/{batch_id}/delete-runs")
    for batch_id in done[n // 4 : n // 2]:
        _post(f"{url}/_emulator/batches/{batch_id}/delete")
    _post(f"{url}/_emulator/batches?sizes={','.join(['100'] * (n - 3 * (n // 4)))}")
    return n


def run(start_emulator: Any, batch_count: int, repeats: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    for _ in range(repeats):
        emulator, url = start_emulator([], batch_count, 100)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                db = Path(tmp) / "mirror.db"
                base = [sys.executable, "-m", "omics_batch_runs"]
                common = ["--all-batches", "--endpoint-url", url, "--no-progress"]
                _served(url)
                first = _timed([*base, "sync", *common, "--db", str(db)])
                first_requests = _served(url)
                changed = _change_one_percent(url, _all_batches(url))
                _served(url)
                resync = _timed([*base, "sync", *common, "--db", str(db)])
                resync_requests = _served(url)
                export = _timed([*base, "export", *common, "-o", "/dev/null"])
                export_requests = _served(url)
        finally:
            emulator.terminate()
            emulator.wait(10)
        samples.append(
            {
                "changed": changed,
                "first_sync_s": first,
                "first_sync_requests": sum(first_requests.values()),
                "resync_s": resync,
                "resync_requests": sum(resync_requests.values()),
                "resync_by_operation": resync_requests,
                "export_s": export,
                "export_requests": sum(export_requests.values()),
            }
        )
    keys = [k for k in samples[0] if k != "resync_by_operation"]
    summary: dict[str, Any] = {k: statistics.median(s[k] for s in samples) for k in keys}
    summary["batches"] = batch_count
    summary["repeats"] = repeats
    summary["resync_by_operation"] = samples[0]["resync_by_operation"]
    return summary


def _all_batches(url: str) -> list[dict[str, Any]]:
    import boto3
    from botocore.config import Config

    client = boto3.client("omics", endpoint_url=url, config=Config(inject_host_prefix=False))
    pages = client.get_paginator("list_batch").paginate()
    return [item for page in pages for item in page["items"]]


def markdown(s: dict[str, Any]) -> str:
    at_quota = 10.0
    first, export = s["first_sync_requests"], s["export_requests"]
    return "\n".join(
        [
            f"Nightly refresh of {s['batches']:,} batches of 100 runs after {s['changed']:,.0f} "
            f"of them (1%) changed upstream; medians of {s['repeats']} runs, no quota on the "
            f"emulator; *at 10 req/s* is the requests divided by the documented quota.",
            "",
            "| step | wall s | requests | at 10 req/s |",
            "|---|--:|--:|--:|",
            f"| first `sync` (new mirror) | {s['first_sync_s']:.1f} | "
            f"{first:,.0f} | {first / at_quota / 60:.1f} min |",
            f"| full `export` | {s['export_s']:.1f} | {export:,.0f} | "
            f"{export / at_quota / 60:.1f} min |",
            f"| **re-`sync`** | {s['resync_s']:.1f} | {s['resync_requests']:,.0f} | "
            f"{s['resync_requests'] / at_quota:.0f} s |",
            "",
        ]
    )
