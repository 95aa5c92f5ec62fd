import os
from pathlib import Path

import anyio
import pytest

from omics_batch_runs.checkpoint import (
    BatchState,
    Checkpoint,
    CheckpointError,
    CheckpointWriteError,
    Job,
)

JOB = Job.of("/data/out.jsonl", ["7", "8"], None, {}, 100)


def save(state: Checkpoint) -> None:
    anyio.run(state.save)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    state = Checkpoint.load_or_new(path, JOB)
    assert not state.started
    state.offset = 123
    state.batches["7"] = BatchState(token="t", lines=100)
    state.statuses["SUCCESS"] += 100
    save(state)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds pagination tokens
    again = Checkpoint.load_or_new(path, JOB)
    assert again.started and again.offset == 123
    assert again.batches["7"] == BatchState(token="t", lines=100)
    assert again.statuses["SUCCESS"] == 100
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (
            Job.of("/data/other.jsonl", ["7", "8"], None, {}, 100),
            "the output: /data/out.jsonl there, /data/other.jsonl here",
        ),
        (Job.of("/data/out.jsonl", ["7", "9"], None, {}, 100), "the batches: 2 batch ids"),
        (Job.of("/data/out.jsonl", [], {"status": "PROCESSED"}, {}, 100), "the batches"),
        (Job.of("/data/out.jsonl", ["7", "8"], None, {"runId": "1"}, 100), "the run filters"),
        (Job.of("/data/out.jsonl", ["7", "8"], None, {}, 50), "the page size: 100 there, 50 here"),
    ],
)
def test_a_checkpoint_of_another_export_is_refused_saying_what_differs(
    tmp_path: Path, other: Job, named: str
) -> None:
    path = tmp_path / "ck.json"
    save(Checkpoint(path, JOB))
    with pytest.raises(CheckpointError, match="belongs to another export") as refused:
        Checkpoint.load_or_new(path, other)
    assert named in str(refused.value)


def test_the_same_ids_in_another_order_are_the_same_job() -> None:
    assert Job.of("o", ["8", "7", "7"], None, {}, 100) == JOB.__class__("o", JOB.selection, {}, 100)


def test_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a checkpoint of this program"):
        Checkpoint.load_or_new(path, JOB)


def test_the_rename_is_made_durable_after_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync of the data, then the rename, then fsync of the directory that holds it."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(a: object, b: object) -> None:
        calls.append("rename")
        real_replace(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save(Checkpoint(tmp_path / "ck.json", JOB))
    assert calls == ["fsync file", "rename", "fsync dir"]


def test_a_failed_save_leaves_the_last_checkpoint_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ck.json"
    state = Checkpoint(path, JOB, offset=10)
    save(state)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    state.offset = 20
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        save(state)
    monkeypatch.undo()
    assert Checkpoint.load_or_new(path, JOB).offset == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json"]
