from pathlib import Path

import pytest

from omics_batch_runs.checkpoint import BatchState, Checkpoint, CheckpointError, fingerprint


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    state = Checkpoint.load_or_new(path, "f1")
    assert not state.started
    state.offset = 123
    state.batches["7"] = BatchState(token="t", lines=100)
    state.statuses["SUCCESS"] += 100
    state.save()
    assert path.stat().st_mode & 0o777 == 0o600  # it holds pagination tokens
    again = Checkpoint.load_or_new(path, "f1")
    assert again.started and again.offset == 123
    assert again.batches["7"] == BatchState(token="t", lines=100)
    assert again.statuses["SUCCESS"] == 100
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_of_another_export_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    Checkpoint(path, "f1").save()
    with pytest.raises(CheckpointError, match="different export"):
        Checkpoint.load_or_new(path, "f2")


def test_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        Checkpoint.load_or_new(path, "f1")


def test_fingerprint_depends_on_every_part() -> None:
    assert fingerprint("a", 100) == fingerprint("a", 100)
    assert fingerprint("a", 100) != fingerprint("a", 99)
