import gzip
from pathlib import Path

import orjson

from omics_batch_runs.sink import JsonLinesSink

RUNS = [{"batchId": "1", "runSettingId": f"s-{i}", "msg": 'é "q"\nline'} for i in range(5)]


def test_lines_round_trip_with_unicode_quotes_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sink = JsonLinesSink(path)
    assert sink.write(RUNS) == 5
    sink.close()
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == RUNS


def test_resume_truncates_to_the_committed_size(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sink = JsonLinesSink(path)
    sink.write(RUNS[:2])
    committed = sink.commit()
    sink.write(RUNS[2:])
    sink.close()
    with open(path, "ab") as f:
        f.write(b'{"half": ')  # what a kill mid-write leaves
    sink = JsonLinesSink(path, resume_at=committed)
    sink.write(RUNS[2:])
    sink.close()
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == RUNS


def test_gzip_is_a_series_of_members_that_resumes_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl.gz"
    sink = JsonLinesSink(path)
    sink.write(RUNS[:3])
    committed = sink.commit()
    sink.write(RUNS[3:])
    sink.commit()
    sink.close()
    sink = JsonLinesSink(path, resume_at=committed)
    sink.write(RUNS[3:])
    sink.close()
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert [orjson.loads(line) for line in lines] == RUNS
