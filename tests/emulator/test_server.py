"""The emulator as a command: listens, reports, stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

import orjson
import pytest

from ..conftest import boto3_client


def test_the_emulator_command_serves_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "omics_batch_runs", "emulator", "--port", "0"]
    command += ["--batches", "3", "--runs-per-batch", "150", "--seed", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = boto3_client(url)
        ids = [b["id"] for b in client.list_batch()["items"]]
        assert len(ids) == 3
        page = client.list_runs_in_batch(batchId=ids[0])
        assert len(page["runs"]) == 100 and page["nextToken"]
        with urllib.request.urlopen(f"{url}/_emulator/counters?reset=1") as response:
            counters = orjson.loads(response.read())
        assert counters["requests"] == {"ListBatch": 1, "ListRunsInBatch": 1}
        with urllib.request.urlopen(f"{url}/_emulator/counters") as response:
            assert orjson.loads(response.read())["requests"] == {}
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "options",
    [
        ["--fault-rate", "2"],
        ["--rate", "nan"],
        ["--burst", "3"],  # a burst without a quota
        ["--rate", "10", "--burst", "inf"],
        ["--neighbour-rps", "nan"],
        ["--neighbour-rps", "5000"],
    ],
)
def test_bad_emulator_options_are_one_line(options: list[str]) -> None:
    command = [sys.executable, "-m", "omics_batch_runs", "emulator", *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("omics-batch-runs: error:") and done.stderr.count("\n") == 1
