"""The export command end to end: real aiobotocore client, emulator over HTTP."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from omics_batch_runs.cli import main
from omics_batch_runs.emulator import Behaviour, Dataset, Emulator, run_emulator_in_thread

from .conftest import by_key, paginate_with_boto3


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


def test_json_logs_carry_no_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with run_emulator_in_thread(Dataset(seed=8, batches=6), Behaviour(timeout_rate=0.2)) as emu:
        argv = [*emu.batch_ids, "-o", str(tmp_path / "o.jsonl"), "--log-format", "json"]
        argv += ["--log-level", "debug", "--endpoint-url", emu.endpoint_url]
        assert run(["export", *argv]) == 0
    err = capsys.readouterr().err
    logs = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("retrying ListRunsInBatch" in entry["message"] for entry in logs)
    for secret in ("AKIAEMULATOREXAMPLE0", "emulator-secret", "Signature="):
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


def _export_command(url: str, out: Path, ck: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "omics_batch_runs",
        "export",
        "--all-batches",
        "--endpoint-url",
        url,
        "-o",
        str(out),
        "--checkpoint",
        str(ck),
        "--concurrency",
        "4",
        "--no-progress",
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_kill_9_at_any_moment_then_resume_is_exactly_once(tmp_path: Path, suffix: str) -> None:
    emulator, url = _start_emulator("--batches", "30", "--seed", "5", "--rate", "80")
    try:
        out, ck = tmp_path / f"runs{suffix}", tmp_path / "ck.json"
        command = _export_command(url, out, ck)
        rng = random.Random(suffix)
        for _ in range(4):
            export = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for(out)
            time.sleep(rng.uniform(0.0, 1.2))  # mid-page, mid-commit, mid-save: any moment
            export.send_signal(signal.SIGKILL)
            export.wait()
        finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        data = Dataset(seed=5, batches=30)
        expected = [{"batchId": b.id, **r} for b in data.batches for r in data.runs(b)]
        assert by_key(read_lines(out)) == by_key(expected)
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
