import gzip
import os
from pathlib import Path

import anyio
import orjson
import pytest

from omics_batch_runs.sink import OutputError, OutputRefused, open_sink

RUNS = [{"batchId": "1", "runSettingId": f"s-{i}", "msg": 'é "q"\nline'} for i in range(5)]


def read(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.splitlines()]


def test_lines_round_trip_with_unicode_quotes_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sink = open_sink(str(path), resume_at=None, checkpoint=False)
    assert sink.write(RUNS) == 5
    anyio.run(sink.commit)
    sink.close()
    assert read(path) == RUNS


@pytest.mark.parametrize("name", ["runs.jsonl.gz", "runs.JSONL.GZ"])
def test_gzip_whatever_the_case_of_the_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    sink = open_sink(str(path), resume_at=None, checkpoint=False)
    sink.write(RUNS)
    anyio.run(sink.commit)
    sink.close()
    assert path.read_bytes()[:2] == b"\x1f\x8b" and read(path) == RUNS


@pytest.mark.parametrize("name", ["runs.jsonl", "runs.jsonl.gz"])
def test_resume_truncates_to_the_committed_size(tmp_path: Path, name: str) -> None:
    """A gzip file is a series of members, one per commit, so it resumes as cleanly."""
    path = tmp_path / name
    sink = open_sink(str(path), resume_at=None, checkpoint=True)
    sink.write(RUNS[:2])
    committed = anyio.run(sink.commit)
    sink.write(RUNS[2:])
    sink.close()  # not committed: a kill now
    with open(path, "ab") as f:
        f.write(b'{"half": ')  # what a kill mid-write leaves
    assert path.stat().st_size > committed
    sink = open_sink(str(path), resume_at=committed, checkpoint=True)
    assert path.stat().st_size == committed
    sink.write(RUNS[2:])
    anyio.run(sink.commit)
    sink.close()
    assert read(path) == RUNS


@pytest.mark.parametrize(("first", "second"), [(True, True), (True, False), (False, True)])
def test_a_second_writer_of_an_output_file_is_refused_untouched(
    tmp_path: Path, first: bool, second: bool
) -> None:
    """Resumable or not: two exports in one file would corrupt it."""
    path = str(tmp_path / "runs.jsonl")
    writing = open_sink(path, resume_at=None, checkpoint=first)
    writing.write(RUNS)
    anyio.run(writing.commit)
    with pytest.raises(OutputRefused, match="being written by another export"):
        open_sink(path, resume_at=None, checkpoint=second)
    assert read(tmp_path / "runs.jsonl") == RUNS  # not truncated by the refused one
    writing.close()
    open_sink(path, resume_at=None, checkpoint=second).close()


def test_an_output_shorter_than_its_checkpoint_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_bytes(b'{"a":1}\n')
    with pytest.raises(OutputRefused, match="holds 8 bytes, fewer than the 100"):
        open_sink(str(path), resume_at=100, checkpoint=True)
    assert path.read_bytes() == b'{"a":1}\n'


def test_only_a_resumable_regular_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    for target, checkpoint in [(str(tmp_path / "a"), False), ("/dev/null", False)]:
        sink = open_sink(target, resume_at=None, checkpoint=checkpoint)
        sink.write(RUNS)
        anyio.run(sink.commit)
        sink.close()
    assert synced == []
    sink = open_sink(str(tmp_path / "b"), resume_at=None, checkpoint=True)
    sink.write(RUNS)
    anyio.run(sink.commit)
    sink.close()
    assert len(synced) == 1


def test_a_failed_write_is_never_committed() -> None:
    sink = open_sink("/dev/full", resume_at=None, checkpoint=False)
    with pytest.raises(OutputError, match="cannot write /dev/full: No space left on device"):
        sink.write(RUNS * 2000)  # more than the buffer: the write reaches the device
        anyio.run(sink.commit)
    assert sink.broken
    with pytest.raises(OutputError, match="not written in full"):
        anyio.run(sink.commit)
    sink.close()
