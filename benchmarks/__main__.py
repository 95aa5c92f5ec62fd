"""`make bench`: this project against the fetchers users would otherwise write, in one run.

Every (scenario, client) pair gets a fresh emulator process (so each starts with a full
quota bucket) and a fresh client process (so CPU time and peak RSS are its own), and is
repeated; medians are reported. Results go to benchmarks/results/ (JSON, markdown, plot)
and into the README between its benchmark markers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import neighbours, nightly
from .clients import CLIENTS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OURS = "omics-batch-runs"
SYNC = "omics-batch-runs sync"


@dataclass
class Scenario:
    name: str
    what: str
    emulator: list[str]
    batches: int
    runs_per_batch: int
    concurrency: int = 16
    clients: list[str] = field(default_factory=lambda: [c for c in CLIENTS if c != SYNC])
    ideal_pages_per_s: float | None = None
    burst: float = 0.0
    check: bool = True
    once: tuple[str, ...] = ()  # clients too slow here to repeat
    repeats: int = 0  # at least this many, where a target sits within the machine's noise

    @property
    def pages(self) -> int:
        return self.batches * -(-self.runs_per_batch // 100)

    def ideal_seconds(self) -> float | None:
        if self.ideal_pages_per_s is None:
            return None
        return max(self.pages - self.burst, 0) / self.ideal_pages_per_s


def scenarios(quick: bool) -> list[Scenario]:
    scale = 0.5 if quick else 1.0
    memory = [
        Scenario(
            f"memory, {n:,} batches",
            f"{n:,} batches of 100 runs, no quota, no latency",
            [],
            n,
            100,
            clients=[OURS] if n < 10_000 else [c for c in CLIENTS if c != SYNC],
            check=False,
        )
        for n in (100, 1_000, 10_000)
    ]
    return [
        Scenario(
            "quota-bound",
            "quota 10 req/s (burst 10), 30 ms latency",
            ["--rate", "10", "--burst", "10", "--latency-ms", "30"],
            int(40 * scale),
            500,
            ideal_pages_per_s=10.0,
            burst=10,
            clients=list(CLIENTS),
        ),
        Scenario(
            "latency-bound",
            "100 ms latency, no quota, concurrency 16",
            ["--latency-ms", "100"],
            int(128 * scale),
            1000,
            ideal_pages_per_s=160.0,
            once=("boto3 sequential paginator",),
            repeats=5,
        ),
        Scenario(
            "faulty",
            "5% 408, 3% 500, 2% dropped connections, 10 ms latency",
            [
                *("--latency-ms", "10", "--timeout-rate", "0.05"),
                *("--error-rate", "0.03", "--drop-rate", "0.02"),
            ],
            int(64 * scale),
            500,
        ),
        *memory,
    ]


def start_emulator(
    args: list[str], batches: int, runs: int | None
) -> tuple[subprocess.Popen[str], str]:
    """An emulator process and its URL; `runs` None: batches of varied sizes."""
    command = [sys.executable, "-m", "omics_batch_runs", "emulator", "--port", "0"]
    command += ["--batches", str(batches), *args]
    command += [] if runs is None else ["--runs-per-batch", str(runs)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def emulator_counters(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_emulator/counters") as response:
        return dict(orjson.loads(response.read()))


def batch_ids(url: str) -> list[str]:
    import boto3
    from botocore.config import Config

    client = boto3.client("omics", endpoint_url=url, config=Config(inject_host_prefix=False))
    pages = client.get_paginator("list_batch").paginate()
    return [item["id"] for page in pages for item in page["items"]]


def run_once(scenario: Scenario, client: str, ids_file: Path) -> dict[str, Any]:
    emulator, url = start_emulator(scenario.emulator, scenario.batches, scenario.runs_per_batch)
    try:
        ids_file.write_text("\n".join(batch_ids(url)))
        before = emulator_counters(url)["requests"].get("ListRunsInBatch", 0)
        check = "check" if scenario.check else "count"
        command = [sys.executable, "-m", "benchmarks.clients", client, url, str(ids_file)]
        command += [str(scenario.concurrency), check]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{client} failed in {scenario.name}:\n{done.stderr[-2000:]}")
        result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
        counters = emulator_counters(url)
        requests = counters["requests"].get("ListRunsInBatch", 0) - before
        result["requests"] = requests
        result["throttled"] = counters["throttled"]
        expected = scenario.batches * scenario.runs_per_batch
        result["complete"] = (
            result["error"] is None
            and result["runs"] == expected
            and result["unique"] in (None, expected)
        )
        return result
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


def summarise(scenario: Scenario, client: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    wall = statistics.median(r["wall"] for r in runs)
    ideal = scenario.ideal_seconds()
    pages = statistics.median(r["pages"] for r in runs)
    lags = [r["loop_lag_ms"] for r in runs if r["loop_lag_ms"] is not None]
    total_runs = max(statistics.median(r["runs"] for r in runs), 1)
    return {
        "scenario": scenario.name,
        "client": client,
        "repeats": len(runs),
        "wall_s": wall,
        "pages_per_s": pages / wall,
        "share_of_ideal": None if ideal is None else ideal / wall,
        "throttled_share": statistics.median(r["throttled"] / max(r["requests"], 1) for r in runs),
        "requests": statistics.median(r["requests"] for r in runs),
        "cpu_s_per_100k_runs": statistics.median(r["cpu"] for r in runs) * 100_000 / total_runs,
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "loop_lag_ms": statistics.median(lags) if lags else None,
        "complete": all(r["complete"] for r in runs),
        "errors": sorted({r["error"] for r in runs if r["error"]}),
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def emulator_throughput(seconds: float = 5.0, workers: int = 32) -> tuple[float, float]:
    """Requests/s the emulator served (100-run pages, every page new) to a Python load
    generator on the other core, and what one core of it can serve: requests per CPU second.
    """
    import aiohttp

    emulator, url = start_emulator([], 64, 10_000)
    try:
        ids = batch_ids(url)
        served = 0
        deadline = time.perf_counter() + seconds
        headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=bench"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers)) as session:

            async def page_through(batch_id: str) -> None:
                nonlocal served
                token = None
                while time.perf_counter() < deadline:
                    params = {"maxItems": "100", **({"startingToken": token} if token else {})}
                    address = f"{url}/runBatch/{batch_id}/run"
                    async with session.get(address, params=params, headers=headers) as response:
                        body = orjson.loads(await response.read())
                    served += 1
                    token = body.get("nextToken")
                    if token is None:
                        return

            started, cpu = time.perf_counter(), _cpu_seconds(emulator.pid)
            await asyncio.gather(*(page_through(ids[i % len(ids)]) for i in range(workers)))
            elapsed, cpu = time.perf_counter() - started, _cpu_seconds(emulator.pid) - cpu
            return served / elapsed, served / max(cpu, 1e-9)
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _complete(row: dict[str, Any]) -> str:
    if row["complete"]:
        return "yes"
    return "**no**" + (f" ({', '.join(row['errors'])})" if row["errors"] else "")


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']} ({meta['cores']} cores, shared and "
        f"noisy: compare ratios), {meta['python']}; medians of the runs counted in *runs*; "
        f"emulator on loopback in its own process. Emulator alone (100-run pages, every page "
        f"new): {meta['emulator_rps']:,.0f} requests/s served to a Python load generator on "
        f"the other core, {meta['emulator_rps_per_core']:,.0f} requests per CPU second.",
        "",
        "| scenario | client | runs | wall s | pages/s | share of ideal | throttled | "
        "CPU s / 100k runs | peak RSS MB | worst loop lag ms | complete |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    for r in rows:
        name = f"**{r['client']}**" if r["client"] in (OURS, SYNC) else r["client"]
        done = r["complete"]
        lines.append(
            f"| {r['scenario']} | {name} | {r['repeats']} | {r['wall_s']:.2f} | "
            f"{_fmt(r['pages_per_s'] if done else None, '.1f')} | "
            f"{_fmt(r['share_of_ideal'] if done else None, '.0%')} | "
            f"{r['throttled_share']:.1%} | "
            f"{_fmt(r['cpu_s_per_100k_runs'] if done else None, '.2f')} | "
            f"{r['peak_rss_mb']:.0f} | "
            f"{_fmt(r['loop_lag_ms'], '.0f')} | {_complete(r)} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in dict.fromkeys(r["scenario"] for r in rows) if "memory, 1," not in s]
    shown = [s for s in shown if s not in ("memory, 100 batches",)]
    clients = list(CLIENTS)
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4), squeeze=False)
    for ax, scenario in zip(axes[0], shown, strict=True):
        mine = {r["client"]: r for r in rows if r["scenario"] == scenario}
        names = [c for c in clients if c in mine]
        values = [mine[c]["wall_s"] for c in names]
        colours = ["tab:green" if c in (OURS, SYNC) else "tab:grey" for c in names]
        bars = ax.barh(range(len(names)), values, color=colours)
        for bar, name in zip(bars, names, strict=True):
            if not mine[name]["complete"]:  # it gave up: its time is not a result
                bar.set_hatch("///")
                bar.set_alpha(0.4)
                ax.text(bar.get_width(), bar.get_y() + 0.5, " gave up", va="center", fontsize=7)
        ax.set_yticks(range(len(names)), [n.replace(" ", "\n", 1) for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("wall time, s (lower is better)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def update_readme(marker: str, block: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = f"<!-- {marker}:start -->\n{block}\n<!-- {marker}:end -->"
    pattern = re.compile(rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->", re.DOTALL)
    if pattern.search(text):
        readme.write_text(pattern.sub(lambda _: block, text))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="Half-size batch sets.")
    parser.add_argument(
        "--only", action="append", help="Run only scenarios whose name contains this (repeatable)."
    )
    parser.add_argument("--render", action="store_true", help="Redo the table from the JSON.")
    args = parser.parse_args()
    if args.render:
        saved = orjson.loads((RESULTS / "results.json").read_bytes())
        publish(saved["rows"], saved["meta"])
        return
    # Dummy credentials for the emulator, inherited by every client process.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    os.environ.pop("AWS_PROFILE", None)

    def wanted(name: str) -> bool:
        return not args.only or any(part in name for part in args.only)

    names = [s.name for s in scenarios(args.quick)] + [s.name for s in neighbours.SCENARIOS]
    if not any(wanted(name) for name in [*names, "nightly re-sync"]):
        parser.error(f"--only matches no scenario: {', '.join(args.only)}")

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = Path(tmp) / "ids.txt"
        for scenario in scenarios(args.quick):
            if not wanted(scenario.name):
                continue
            for client in scenario.clients:
                repeats = max(args.repeats, scenario.repeats)
                repeats = 1 if client in scenario.once else repeats
                runs = [run_once(scenario, client, ids_file) for _ in range(repeats)]
                row = summarise(scenario, client, runs)
                rows.append(row)
                share = _fmt(row["share_of_ideal"] if row["complete"] else None, ".0%")
                print(
                    f"{scenario.name:22} {client:30} {row['wall_s']:7.2f}s  ideal {share:>4}  "
                    f"throttled {row['throttled_share']:5.1%}  rss {row['peak_rss_mb']:5.0f} MB",
                    flush=True,
                )
        neighbour_rows = neighbours.run(start_emulator, args.repeats, wanted)
        nightly_summary = None
        if wanted("nightly re-sync"):
            batches = 5_000 if args.quick else 10_000
            nightly_summary = nightly.run(start_emulator, batches, args.repeats)
            print(nightly.markdown(nightly_summary), flush=True)
    meta: dict[str, Any] = {
        "nightly": nightly_summary,
        "neighbours": neighbour_rows,
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": f"Python {platform.python_version()}",
    }
    meta["emulator_rps"], meta["emulator_rps_per_core"] = asyncio.run(emulator_throughput())
    print(
        f"emulator: {meta['emulator_rps']:,.0f} requests/s served, "
        f"{meta['emulator_rps_per_core']:,.0f} per CPU second"
    )
    if args.only and (RESULTS / "results.json").exists():
        # A partial run replaces its own scenarios' rows and keeps the rest of the last.
        rows, meta = _merged(orjson.loads((RESULTS / "results.json").read_bytes()), rows, meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_bytes(
        orjson.dumps({"meta": meta, "rows": rows}, option=orjson.OPT_INDENT_2)
    )
    publish(rows, meta)


def _merged(
    saved: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ran = {r["scenario"] for r in rows}
    rows = [r for r in saved["rows"] if r["scenario"] not in ran] + rows
    ran_shared = {r["scenario"] for r in meta["neighbours"]}
    kept = [r for r in saved["meta"].get("neighbours") or [] if r["scenario"] not in ran_shared]
    meta["neighbours"] = kept + meta["neighbours"]
    meta["nightly"] = meta["nightly"] or saved["meta"].get("nightly")
    order = [s.name for s in scenarios(False)]
    rows.sort(key=lambda r: order.index(r["scenario"]) if r["scenario"] in order else len(order))
    shared = [s.name for s in neighbours.SCENARIOS]
    meta["neighbours"].sort(key=lambda r: shared.index(r["scenario"]))
    return rows, meta


def publish(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    table = markdown(rows, meta)
    plot(rows, RESULTS / "results.png")
    update_readme("bench", f"{table}\n![benchmarks](benchmarks/results/results.png)")
    if meta.get("neighbours"):
        shared = neighbours.markdown(meta["neighbours"])
        update_readme("neighbours", shared)
        table += "\n" + shared
    if meta.get("nightly"):
        night = nightly.markdown(meta["nightly"])
        update_readme("nightly", night)
        table += "\n" + night
    (RESULTS / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
