"""The export command end to end: real aiobotocore client, emulator over HTTP."""

from __future__ import annotations

import gzip
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from omics_batch_runs.cli import main
from omics_batch_runs.emulator import Behaviour, Dataset, Emulator, run_emulator_in_thread

from .conftest import boto3_client, by_key, paginate_with_boto3


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def read_lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    assert data == b"" or data.endswith(b"\n"), "a partial last line"
    return [orjson.loads(line) for line in data.splitlines()]


def reference(emulator: Emulator, batch_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """What boto3's own paginator returns for these batches."""
    ids = batch_ids if batch_ids is not None else emulator.batch_ids
    return [r for b in ids for r in paginate_with_boto3(emulator.endpoint_url, b)]


def test_export_to_a_file_equals_boto3s_paginator(served: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    code = run(["export", *served.batch_ids, "-o", str(out), "--endpoint-url", served.endpoint_url])
    assert code == 0
    assert by_key(read_lines(out)) == by_key(reference(served))


def test_export_to_stdout_by_default(
    served: Emulator, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    ids = served.batch_ids[:3]
    assert run(["export", *ids, "--endpoint-url", served.endpoint_url]) == 0
    captured = capsysbinary.readouterr()
    runs = [orjson.loads(line) for line in captured.out.splitlines()]
    assert by_key(runs) == by_key(reference(served, ids))
    assert b"runs written" in captured.err  # the summary goes to stderr, never stdout


def test_gzip_output(served: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl.gz"
    assert (
        run(["export", *served.batch_ids, "-o", str(out), "--endpoint-url", served.endpoint_url])
        == 0
    )
    assert by_key(read_lines(out)) == by_key(reference(served))


def test_ids_from_a_file_and_stdin(
    served: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# batches\n" + "\n".join(served.batch_ids[:4]) + "\n\n")
    out = tmp_path / "a.jsonl"
    argv = [
        "--batch-ids-file",
        str(ids_file),
        "-o",
        str(out),
        "--endpoint-url",
        served.endpoint_url,
    ]
    assert run(["export", *argv]) == 0
    assert by_key(read_lines(out)) == by_key(reference(served, served.batch_ids[:4]))
    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(served.batch_ids[4:6])))
    out2 = tmp_path / "b.jsonl"
    argv = ["--batch-ids-file", "-", "-o", str(out2), "--endpoint-url", served.endpoint_url]
    assert run(["export", *argv]) == 0
    assert by_key(read_lines(out2)) == by_key(reference(served, served.batch_ids[4:6]))


def test_all_batches_and_a_batch_filter(served: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    url = served.endpoint_url
    assert run(["export", "--all-batches", "-o", str(out), "--endpoint-url", url]) == 0
    assert by_key(read_lines(out)) == by_key(reference(served))
    group = served.dataset.batches[0].run_group_id
    in_group = [b.id for b in served.dataset.batches if b.run_group_id == group]
    argv = ["--all-batches", "--run-group-id", group, "-o", str(out), "--endpoint-url", url]
    assert run(["export", *argv]) == 0
    assert by_key(read_lines(out)) == by_key(reference(served, in_group))


def test_submission_status_filter(served: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "failed.jsonl"
    argv = [*served.batch_ids, "--submission-status", "FAILED", "-o", str(out)]
    assert run(["export", *argv, "--endpoint-url", served.endpoint_url]) == 0
    failed = [r for r in reference(served) if r["submissionStatus"] == "FAILED"]
    assert by_key(read_lines(out)) == by_key(failed)


def test_a_missing_batch_fails_alone(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs.jsonl"
    argv = ["999", *served.batch_ids, "-o", str(out), "--endpoint-url", served.endpoint_url]
    assert run(["export", *argv]) == 1
    err = capsys.readouterr().err
    assert "failed: batch 999: ResourceNotFoundException" in err
    assert by_key(read_lines(out)) == by_key(reference(served))


def test_under_faults_the_export_is_exactly_once(tmp_path: Path) -> None:
    faults = Behaviour(timeout_rate=0.05, error_rate=0.03, drop_rate=0.02, rate=300, burst=30)
    with run_emulator_in_thread(Dataset(seed=8, batches=20), faults) as emulator:
        out = tmp_path / "runs.jsonl"
        argv = ["--all-batches", "-o", str(out), "--endpoint-url", emulator.endpoint_url]
        assert run(["export", *argv]) == 0
        assert sum(emulator.counters.faults.values()) > 0
        faults.timeout_rate = faults.error_rate = faults.drop_rate = 0.0
        faults.set_quota(None)
        assert by_key(read_lines(out)) == by_key(reference(emulator))


def test_json_logs_carry_no_secrets(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dropped connection's error names the URL, pagination token included: it really
    reaches a log record, and only the redaction keeps it out of the output."""
    big = max(served.dataset.batches, key=lambda b: b.total_runs).id
    token = boto3_client(served.endpoint_url).list_runs_in_batch(batchId=big)["nextToken"]
    served.script_faults([None, "drop", "drop"])  # the second page (aiohttp retries one drop)
    argv = [big, "-o", str(tmp_path / "o.jsonl"), "--log-format", "json"]
    argv += ["--log-level", "debug", "--endpoint-url", served.endpoint_url]
    assert run(["export", *argv]) == 0
    err = capsys.readouterr().err
    logs = [orjson.loads(line) for line in err.splitlines()]  # every line is JSON
    retried = [e["message"] for e in logs if "retrying ListRunsInBatch" in e["message"]]
    assert retried and all("startingToken=[redacted]" in m for m in retried)
    for secret in (token, "AKIAEMULATOREXAMPLE0", "emulator-secret", "Signature="):
        assert secret not in err


def test_a_finished_export_resumed_does_nothing(served: Emulator, tmp_path: Path) -> None:
    out, ck = tmp_path / "runs.jsonl", tmp_path / "ck.json"
    argv = ["export", *served.batch_ids, "-o", str(out), "--checkpoint", str(ck)]
    argv += ["--endpoint-url", served.endpoint_url]
    assert run(argv) == 0
    before = out.read_bytes()
    requests = dict(served.counters.requests)
    assert run(argv) == 0
    assert out.read_bytes() == before
    assert served.counters.requests == requests


def test_a_checkpoint_of_another_export_is_refused(served: Emulator, tmp_path: Path) -> None:
    out, ck = tmp_path / "runs.jsonl", tmp_path / "ck.json"
    base = ["export", served.batch_ids[0], "-o", str(out), "--checkpoint", str(ck)]
    base += ["--endpoint-url", served.endpoint_url]
    assert run(base) == 0
    served.counters.reset()
    assert run([*base, "--page-size", "50"]) == 2
    assert served.counters.requests == {}


def _start_emulator(*args: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "omics_batch_runs", "emulator", "--port", "0", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    """Until the export has begun writing (so its signal handlers are in place)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size > 0):
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.02)


def _export_command(url: str, out: Path, ck: Path | None) -> list[str]:
    command = [sys.executable, "-m", "omics_batch_runs", "export", "--all-batches"]
    command += ["--endpoint-url", url, "-o", str(out), "--concurrency", "4", "--no-progress"]
    return command if ck is None else [*command, "--checkpoint", str(ck)]


def _served(url: str) -> int:
    """ListRunsInBatch requests the emulator process has answered since the last call."""
    with urllib.request.urlopen(f"{url}/_emulator/counters?reset=1") as answer:
        return int(orjson.loads(answer.read())["requests"].get("ListRunsInBatch", 0))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_kill_9_at_any_moment_then_resume_is_exactly_once(tmp_path: Path, suffix: str) -> None:
    emulator, url = _start_emulator("--batches", "30", "--seed", "5", "--rate", "80")
    try:
        out, ck = tmp_path / f"runs{suffix}", tmp_path / "ck.json"
        command = _export_command(url, out, ck)
        rng = random.Random(suffix)
        for _ in range(4):
            export = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for(ck)
            time.sleep(rng.uniform(0.0, 1.2))  # mid-page, mid-commit, mid-save: any moment
            export.send_signal(signal.SIGKILL)
            export.wait()
        saved = orjson.loads(ck.read_bytes())
        committed = out.read_bytes()[: saved["offset"]]
        _served(url)
        finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        data = Dataset(seed=5, batches=30)
        expected = [{"batchId": b.id, **r} for b in data.batches for r in data.runs(b)]
        assert by_key(read_lines(out)) == by_key(expected)
        # It went on from the checkpoint: what was committed is kept as it was, and only
        # the pages after the saved tokens were asked for (a full export asks for them all).
        assert out.read_bytes()[: saved["offset"]] == committed
        pages_left = sum(
            -(-b.total_runs // 100) or 1
            for b in data.batches
            if not saved["batches"].get(b.id, {}).get("done")
        ) - sum(
            saved["batches"][b]["lines"] // 100
            for b in saved["batches"]
            if not saved["batches"][b]["done"]
        )
        served = _served(url)
        full = sum(-(-b.total_runs // 100) or 1 for b in data.batches)
        assert pages_left <= served < full
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


def test_sigterm_saves_and_exits_130_then_resumes(tmp_path: Path) -> None:
    emulator, url = _start_emulator("--batches", "30", "--seed", "6", "--rate", "60")
    try:
        out, ck = tmp_path / "runs.jsonl", tmp_path / "ck.json"
        command = _export_command(url, out, ck)
        export = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        _wait_for(out)
        time.sleep(0.5)
        export.send_signal(signal.SIGTERM)
        _, err = export.communicate(timeout=30)
        assert export.returncode == 130, err
        assert "interrupted" in err
        assert ck.exists() and os.stat(ck).st_size > 0
        partial = read_lines(out)
        finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        data = Dataset(seed=6, batches=30)
        expected = [{"batchId": b.id, **r} for b in data.batches for r in data.runs(b)]
        runs = read_lines(out)
        assert runs[: len(partial)] == partial
        assert by_key(runs) == by_key(expected)
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


def test_an_interrupted_export_without_a_checkpoint_does_not_promise_a_resume(
    tmp_path: Path,
) -> None:
    emulator, url = _start_emulator("--batches", "30", "--seed", "6", "--rate", "60")
    try:
        out = tmp_path / "runs.jsonl"
        export = subprocess.Popen(
            _export_command(url, out, None), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _wait_for(out)
        export.send_signal(signal.SIGTERM)
        _, err = export.communicate(timeout=30)
        assert export.returncode == 130, err
        assert b"resume with the same command" not in err
        assert b"add --checkpoint to resume" in err
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


def test_to_dev_null_and_through_a_fifo(served: Emulator, tmp_path: Path) -> None:
    url = served.endpoint_url
    assert run(["export", *served.batch_ids, "-o", "/dev/null", "--endpoint-url", url]) == 0
    fifo = tmp_path / "runs.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert run(["export", *served.batch_ids, "-o", str(fifo), "--endpoint-url", url]) == 0
    reader.join(10)
    runs = [orjson.loads(line) for line in received[0].splitlines()]
    assert by_key(runs) == by_key(reference(served))


def test_a_reader_closing_the_pipe_ends_the_export_at_once_and_quietly(tmp_path: Path) -> None:
    """`export | head -n 1`: exit 0 (not 1, which says batches failed), nothing on stderr."""
    slow = Behaviour(latency_ms=20)
    with run_emulator_in_thread(Dataset(seed=4, runs_per_batch=2000, batches=30), slow) as emu:
        command = [sys.executable, "-m", "omics_batch_runs", "export", "--all-batches"]
        command += ["--endpoint-url", emu.endpoint_url, "--concurrency", "4"]
        export = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert export.stdout is not None and export.stderr is not None
        assert orjson.loads(export.stdout.readline())["batchId"]
        export.stdout.close()  # what `head -n 1` does once it has its line
        assert export.wait(30) == 0
        assert export.stderr.read() == b""
        sent = sum(emu.counters.requests.values())
        assert sent < 600 / 2  # it stopped: a whole export is 600 pages
        time.sleep(0.3)
        assert sum(emu.counters.requests.values()) == sent


def limit_file_size(size: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.parametrize(
    ("resumable", "name", "limit"),
    [(True, "runs.jsonl", 3 << 20), (False, "runs.jsonl.gz", 1 << 18)],
)
def test_a_write_failing_midway_then_the_same_command_is_exactly_once(
    tmp_path: Path, resumable: bool, name: str, limit: int
) -> None:
    """`ulimit -f`: the write fails mid-export. One line, exit 3, no stray file; the same
    command once the limit is lifted ends with every run exactly once."""
    slow = Behaviour(latency_ms=50)  # 40 pages/s, 1 MB/s: commits come before the limit
    with run_emulator_in_thread(Dataset(seed=4, runs_per_batch=2000, batches=12), slow) as emu:
        out, ck = tmp_path / name, tmp_path / "ck.json"
        command = [sys.executable, "-m", "omics_batch_runs", "export", "--all-batches"]
        command += ["--endpoint-url", emu.endpoint_url, "-o", str(out), "--concurrency", "2"]
        if resumable:
            command += ["--checkpoint", str(ck)]
        failed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=limit_file_size(limit),
        )
        assert failed.returncode == 3, failed.stderr
        assert failed.stderr.splitlines() == [f"error: cannot write {out}: File too large"]
        assert {p.name for p in tmp_path.iterdir()} <= {name, "ck.json"}
        # Cut back to its last commit: whole lines (and gzip members), none half there.
        assert 0 < out.stat().st_size < limit and read_lines(out)
        if resumable:
            committed = orjson.loads(ck.read_bytes())["offset"]
            assert 0 < committed <= out.stat().st_size  # resumes, not starts again
        slow.latency_ms = 0
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert by_key(read_lines(out)) == by_key(reference(emu))


def test_a_saved_token_the_service_refuses_relists_that_batch_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = Behaviour(latency_ms=50)
    with run_emulator_in_thread(Dataset(seed=4, sizes=[3000, 2500, 4000]), slow) as emu:
        out, ck = tmp_path / "runs.jsonl", tmp_path / "ck.json"
        argv = ["export", *emu.batch_ids, "-o", str(out), "--checkpoint", str(ck)]
        argv += ["--endpoint-url", emu.endpoint_url, "--concurrency", "2"]
        export = subprocess.Popen([sys.executable, "-m", "omics_batch_runs", *argv])
        _wait_for(ck)
        export.send_signal(signal.SIGTERM)
        assert export.wait(30) == 130
        saved = orjson.loads(ck.read_bytes())["batches"]
        assert any(b["token"] for b in saved.values())  # a resume with tokens to refuse
        emu.rotate_tokens()
        assert run(argv) == 0
        assert "refused the saved token of batch" in capsys.readouterr().err
        slow.latency_ms = 0
        assert by_key(read_lines(out)) == by_key(reference(emu))


def test_an_unreachable_endpoint_is_said_and_ends_with_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = ["--endpoint-url", "http://127.0.0.1:9", "--max-attempts", "2", "-o", "/dev/null"]
    for selection in (["1", "2"], ["--all-batches"]):
        assert run(["export", *selection, *dead]) == 4
        err = capsys.readouterr().err
        assert "WARNING" in err and "Could not connect to the endpoint URL" in err  # default level


def test_all_batches_matching_nothing_says_so(
    served: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "--all-batches", "--batch-name", "nope", "-o", "/dev/null"]
    assert run([*argv, "--endpoint-url", served.endpoint_url]) == 0
    assert "no batch matched --all-batches --batch-name nope" in capsys.readouterr().err


def test_an_ids_file_with_a_byte_order_mark(served: Emulator, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes("\n".join(served.batch_ids[:2]).encode("utf-8-sig"))
    out = tmp_path / "runs.jsonl"
    argv = ["export", "--batch-ids-file", str(ids), "-o", str(out)]
    assert run([*argv, "--endpoint-url", served.endpoint_url]) == 0
    assert by_key(read_lines(out)) == by_key(reference(served, served.batch_ids[:2]))


def test_the_endpoint_from_the_environment_as_the_aws_cli_reads_it(
    served: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_OMICS", served.endpoint_url)  # host prefix and all
    out = tmp_path / "runs.jsonl"
    assert run(["export", *served.batch_ids[:3], "-o", str(out)]) == 0
    assert by_key(read_lines(out)) == by_key(reference(served, served.batch_ids[:3]))
