import gzip
from pathlib import Path

import orjson
import pytest

from omics_batch_runs.sink import JsonLinesSink

RUNS = [{"batchId": "1", "runSettingId": f"s-{i}", "msg": 'é "q"\nline'} for i in range(5)]


def test_lines_round_trip_with_unicode_quotes_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sink = JsonLinesSink(path)
    assert sink.write(RUNS) == 5
    sink.close()
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == RUNS


def read(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("name", ["runs.jsonl", "runs.jsonl.gz"])
def test_resume_truncates_to_the_committed_size(tmp_path: Path, name: str) -> None:
    """A gzip file is a series of members, one per commit, so it resumes as cleanly."""
    path = tmp_path / name
    sink = JsonLinesSink(path)
    sink.write(RUNS[:2])
    committed = sink.commit()
    sink.write(RUNS[2:])
    assert sink.close() > committed
    with open(path, "ab") as f:
        f.write(b'{"half": ')  # what a kill mid-write leaves
    sink = JsonLinesSink(path, resume_at=committed)
    sink.write(RUNS[2:])
    sink.close()
    assert read(path) == RUNS
