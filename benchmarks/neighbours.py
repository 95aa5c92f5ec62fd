"""A good neighbour on a shared quota: four scenarios, this project beside the baselines.

1. idle quota: 10 req/s, burst 10; the share of the quota turned into pages, and of
   requests throttled, in every run (median and worst);
2. a neighbour calls steadily at 3 req/s on the same quota: the share of the 7 req/s left
   that the export takes, and how often the neighbour is throttled; once hosted by the
   emulator, once a boto3 client of its own over HTTP (as another team's tool would be);
3. the quota changes during the run (10, then 20, then 5 req/s): pages/s from 5 s after
   each change until the next, against the new quota;
4. two exports of the same kind started together on one account, each with half the
   batches: each one's pages/s while both run, against half the quota.

Every client runs in processes of its own, as in the main benchmarks, against the emulator
(30 ms latency; varied batch sizes). Pages are timed by the clients; requests, throttles
and the neighbour's calls are counted by the emulator.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
QUOTA = 10.0
NEIGHBOUR = 3.0
CHANGES = ((20.0, 20.0), (50.0, 5.0))  # (seconds after the clients start, new quota)
CLIENTS = ("omics-batch-runs", "aiobotocore adaptive retries", "boto3 sequential paginator")
OURS = CLIENTS[0]
StartEmulator = Callable[[list[str], int, int | None], tuple[subprocess.Popen[str], str]]


@dataclass
class Scenario:
    name: str
    what: str
    batches: int
    seed: int
    neighbour: float = 0.0
    neighbour_client: bool = False  # a boto3 client over HTTP, not hosted by the emulator
    changes: tuple[tuple[float, float], ...] = ()
    processes: int = 1
    repeats_ours: int = 3


SCENARIOS = (
    Scenario("idle quota", "10 req/s, burst 10", 40, 3, repeats_ours=10),
    Scenario("beside a neighbour", "a steady 3 req/s on the same 10 req/s quota", 40, 3, 3.0),
    Scenario(
        "beside a neighbour client",
        "a boto3 client of its own calling 3 times a second, same quota",
        40,
        3,
        3.0,
        neighbour_client=True,
        repeats_ours=5,
    ),
    Scenario("quota changes", "10, then 20 after 20 s, then 5 after 50 s", 60, 7, 0.0, CHANGES),
    Scenario("two exports", "two processes at once, half the batches each", 60, 3, processes=2),
)


def _request(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method)) as answer:
        return orjson.loads(answer.read())


def _emulator_args(scenario: Scenario) -> list[str]:
    args = ["--seed", str(scenario.seed), "--rate", str(QUOTA), "--burst", str(QUOTA)]
    hosted = 0.0 if scenario.neighbour_client else scenario.neighbour
    return [*args, "--latency-ms", "30", "--neighbour-rps", str(hosted)]


class NeighbourClient:
    """Another tool on the account: boto3, its retries off, one call every 1/rps seconds on
    a fixed schedule, throttles counted and not retried."""

    def __init__(self, url: str, rps: float) -> None:
        import boto3
        from botocore.config import Config

        config = Config(inject_host_prefix=False, retries={"total_max_attempts": 1})
        self._client = boto3.client("omics", endpoint_url=url, config=config)
        self._batch = self._client.list_batch(maxItems=1)["items"][0]["id"]
        self._period = 1.0 / rps
        self._stop = threading.Event()
        self.calls = self.throttled = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            due += self._period
            self._stop.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            self.calls += 1
            try:
                self._client.list_runs_in_batch(batchId=self._batch, maxItems=1)
            except self._client.exceptions.ThrottlingException:
                self.throttled += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _halves(url: str, parts: int) -> list[list[str]]:
    """The batches split into `parts` with about as many pages each (largest first)."""
    import boto3
    from botocore.config import Config

    client = boto3.client("omics", endpoint_url=url, config=Config(inject_host_prefix=False))
    items = [i for p in client.get_paginator("list_batch").paginate() for i in p["items"]]
    items.sort(key=lambda i: -i.get("totalRuns", 0))
    groups: list[list[str]] = [[] for _ in range(parts)]
    load = [0] * parts
    for item in items:
        k = load.index(min(load))
        groups[k].append(item["id"])
        load[k] += max(1, -(-item.get("totalRuns", 0) // 100))
    return groups


def _changes(url: str, start: float, changes: tuple[tuple[float, float], ...]) -> list[float]:
    """Change the quota at the given offsets from `start`; returns when each took effect."""
    at: list[float] = []
    for offset, rate in changes:
        time.sleep(max(0.0, start + offset - time.time()))
        _request(f"{url}/_emulator/quota?rate={rate}&burst={rate}", "PUT")
        at.append(time.time())
    return at


def run_once(
    start_emulator: StartEmulator, scenario: Scenario, client: str, tmp: Path
) -> dict[str, Any]:
    emulator, url = start_emulator(_emulator_args(scenario), scenario.batches, None)
    other: NeighbourClient | None = None
    try:
        groups = _halves(url, scenario.processes)
        if scenario.neighbour_client:
            other = NeighbourClient(url, scenario.neighbour)
            time.sleep(3.0)  # calling steadily before the export comes
        _request(f"{url}/_emulator/counters?reset=1")
        before = (other.calls, other.throttled) if other is not None else (0, 0)
        processes = []
        for k, group in enumerate(groups):
            ids = tmp / f"ids-{k}.txt"
            ids.write_text("\n".join(group))
            command = [sys.executable, "-m", "benchmarks.clients", client, url, str(ids)]
            command += ["16", "count"]
            processes.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
            )
        started = time.time()
        changed: list[float] = []
        changer = threading.Thread(
            target=lambda: changed.extend(_changes(url, started, scenario.changes)), daemon=True
        )
        changer.start()
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=900)
            if process.returncode != 0:
                raise RuntimeError(f"{client} failed in {scenario.name}:\n{err.decode()[-2000:]}")
            outputs.append(orjson.loads(out.decode().strip().splitlines()[-1]))
        changer.join()
        counters = _request(f"{url}/_emulator/counters")
        if other is not None:
            # Its calls went through the emulator as the export's did: count them apart.
            calls, throttled = other.calls - before[0], other.throttled - before[1]
            counters["requests"]["ListRunsInBatch"] -= calls
            counters["throttled"] -= throttled
            counters["neighbour_requests"], counters["neighbour_throttled"] = calls, throttled
    finally:
        if other is not None:
            other.stop()
        emulator.terminate()
        emulator.wait(10)
    return measure(scenario, outputs, counters, changed)


def measure(
    scenario: Scenario,
    outputs: list[dict[str, Any]],
    counters: dict[str, Any],
    changed: list[float],
) -> dict[str, Any]:
    requests = counters["requests"].get("ListRunsInBatch", 0)
    result: dict[str, Any] = {
        "complete": all(o["error"] is None for o in outputs),
        "throttled": counters["throttled"] / max(requests, 1),
        "requests": requests,
    }
    pages = [o["page_times"] for o in outputs]
    if scenario.processes == 2:
        both = (max(p[0] for p in pages), min(p[-1] for p in pages))
        rates = [sum(both[0] <= t <= both[1] for t in p) / (both[1] - both[0]) for p in pages]
        result["shares_of_half"] = sorted(r / (QUOTA / 2) for r in rates)
        result["share"] = sum(rates) / QUOTA
        return result
    (times,) = pages
    wall = outputs[0]["wall"]
    available = QUOTA - scenario.neighbour
    # The bucket's first 10 tokens come at once: what the quota allows is 10 + rate * time.
    result["share"] = max(len(times) - QUOTA, 0) / available / wall
    if scenario.neighbour:
        result["neighbour_throttled"] = counters["neighbour_throttled"] / max(
            counters["neighbour_requests"], 1
        )
    if changed:
        ends = [*changed[1:], times[-1]]
        result["after_changes"] = [
            sum(at + 5 <= t < end for t in times) / max(end - at - 5, 1e-9) / rate
            for at, end, (_, rate) in zip(changed, ends, scenario.changes, strict=True)
        ]
        result["found_after"] = [
            _found(times, at, end, rate)
            for at, end, (_, rate) in zip(changed, ends, scenario.changes, strict=True)
        ]
        result["per_second"] = _per_second(times)
        result["changes_at"] = [round(c - times[0], 1) for c in changed]
    return result


def _found(times: list[float], at: float, end: float, rate: float) -> float | None:
    """Seconds from `at` until pages/s over the next 3 s come within 5% of `rate`."""
    for step in range(int((end - at - 3) * 10)):
        start = at + step / 10
        got = sum(start <= t < start + 3 for t in times) / 3
        if abs(got - rate) <= 0.05 * rate:
            return step / 10
    return None


def _per_second(times: list[float]) -> list[int]:
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for t in times:
        counts[int(t - times[0])] += 1
    return counts


def run(
    start_emulator: StartEmulator, repeats: int, only: Callable[[str], bool] = lambda _: True
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in SCENARIOS:
            if not only(scenario.name):
                continue
            for client in CLIENTS:
                # The baselines are here for comparison, not for their worst run: fewer.
                n = max(repeats, scenario.repeats_ours) if client == OURS else min(repeats, 2)
                runs = [run_once(start_emulator, scenario, client, Path(tmp)) for _ in range(n)]
                row = summarise(scenario, client, runs)
                print(_line(row), flush=True)
                rows.append(row)
    return rows


def summarise(scenario: Scenario, client: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    share = [r["share"] for r in runs]
    throttled = [r["throttled"] for r in runs]
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "what": scenario.what,
        "client": client,
        "runs": len(runs),
        "complete": all(r["complete"] for r in runs),
        "share": statistics.median(share),
        "share_worst": min(share),
        "throttled": statistics.median(throttled),
        "throttled_worst": max(throttled),
    }
    if scenario.neighbour:
        hit = [r["neighbour_throttled"] for r in runs]
        row["neighbour_throttled"] = statistics.median(hit)
        row["neighbour_throttled_worst"] = max(hit)
    if scenario.changes:
        after = list(zip(*(r["after_changes"] for r in runs), strict=True))
        row["after_changes"] = [statistics.median(c) for c in after]
        row["after_changes_worst"] = [min(c) for c in after]
        found = list(zip(*(r["found_after"] for r in runs), strict=True))
        row["found_after"] = [max((f for f in c if f is not None), default=None) for c in found]
        row["found_always"] = all(f is not None for c in found for f in c)
        row["per_second"] = runs[0]["per_second"]
        row["changes_at"] = runs[0]["changes_at"]
    if scenario.processes == 2:
        row["fair"] = statistics.median(r["shares_of_half"][0] for r in runs)
        row["fair_worst"] = min(r["shares_of_half"][0] for r in runs)
        row["greedy_worst"] = max(r["shares_of_half"][1] for r in runs)
    return row


def _line(row: dict[str, Any]) -> str:
    extra = ""
    if "neighbour_throttled" in row:
        extra = f"  neighbour throttled {row['neighbour_throttled']:.1%}"
    if "after_changes" in row:
        extra = "  after changes " + " ".join(f"{s:.0%}" for s in row["after_changes"])
        extra += "  found after " + " ".join(_seconds(f) for f in row["found_after"])
    if "fair" in row:
        extra = f"  smaller share {row['fair']:.0%} of half (worst {row['fair_worst']:.0%})"
    return (
        f"{row['scenario']:20} {row['client']:30} share {row['share']:.0%} "
        f"(worst {row['share_worst']:.0%})  throttled {row['throttled']:.1%} "
        f"(worst {row['throttled_worst']:.1%}){extra}"
    )


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | client | runs | share of what is free (worst) | throttled (worst) | other |",
        "|---|---|--:|--:|--:|---|",
    ]
    for r in rows:
        name = f"**{r['client']}**" if r["client"] == OURS else r["client"]
        other = ""
        if "neighbour_throttled" in r:
            other = (
                f"neighbour throttled {r['neighbour_throttled']:.1%} "
                f"(worst {r['neighbour_throttled_worst']:.1%})"
            )
        if "after_changes" in r:
            other = "after the rise to 20, then the drop to 5: " + "; ".join(
                f"within 5% after {_seconds(f)} (slowest run), {s:.0%} from 5 s on (worst {w:.0%})"
                for f, s, w in zip(
                    r["found_after"], r["after_changes"], r["after_changes_worst"], strict=True
                )
            )
            if not r["found_always"]:
                other += "; not within 5% before the next change in some runs"
        if "fair" in r:
            other = (
                f"each of half the quota: the smaller {r['fair']:.0%} "
                f"(worst {r['fair_worst']:.0%}), the larger at most {r['greedy_worst']:.0%}"
            )
        done = "" if r["complete"] else " (gave up)"
        # Against a quota that changes, the share is in *other*, change by change.
        shared = "-" if "after_changes" in r else f"{r['share']:.0%} ({r['share_worst']:.0%})"
        lines.append(
            f"| {r['scenario']}: {r['what']} | {name}{done} | {r['runs']} | {shared} | "
            f"{r['throttled']:.1%} ({r['throttled_worst']:.1%}) | {other} |"
        )
    return "\n".join(lines) + "\n"
