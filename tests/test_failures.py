"""The failure report, from a mirror synced from the emulator with execution statuses."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest

from omics_batch_runs.cli import main
from omics_batch_runs.emulator import Emulator
from omics_batch_runs.failures import as_csv, failures

from .conftest import boto3_client, paginate_with_boto3


def test_failed_submissions_agree_with_getbatch_and_the_listing(
    mirror: Path, served: Emulator
) -> None:
    found = failures(mirror, runs=False)
    client = boto3_client(served.endpoint_url)
    for batch_id in served.batch_ids:
        summary = client.get_batch(batchId=batch_id)["submissionSummary"]
        mine = [f for f in found if f.batch_id == batch_id]
        assert len(mine) == summary.get("failedStartSubmissionCount", 0)
        listed = paginate_with_boto3(served.endpoint_url, batch_id, submissionStatus="FAILED")
        assert [(f.run_setting_id, f.reason, f.message) for f in mine] == sorted(
            (r["runSettingId"], r["submissionFailureReason"], r["submissionFailureMessage"])
            for r in listed
        )


def test_runs_that_failed_or_were_cancelled_come_from_listruns(
    mirror: Path, served: Emulator
) -> None:
    client = boto3_client(served.endpoint_url)
    expected = set()
    for batch_id in served.batch_ids:
        pages = client.get_paginator("list_runs").paginate(batchId=batch_id)
        for page in pages:
            for item in page["items"]:
                if item["status"] in ("FAILED", "CANCELLED"):
                    expected.add((batch_id, item["id"], item["status"]))
    found = {(f.batch_id, f.run_id, f.reason) for f in failures(mirror) if f.stage == "run"}
    assert found == expected and expected


def test_the_csv_opens_in_a_spreadsheet_as_it_is(mirror: Path) -> None:
    found = failures(mirror)
    text = as_csv(found)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["batch_id", "run_setting_id", "run_id", "stage", "reason", "message"]
    assert len(rows) == len(found) + 1
    messages = {f.message for f in found if f.message}
    assert {r[5] for r in rows[1:] if r[5]} == messages  # commas, quotes, newlines intact
    assert any("\n" in m for m in messages) and any('"' in m for m in messages)


def test_the_command_writes_csv_or_json_lines_for_a_pipe(
    mirror: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = served.batch_ids[3]
    with pytest.raises(SystemExit) as done:
        main(["failures", batch_id, "--db", str(mirror), "--format", "jsonl"])
    assert done.value.code == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [f.as_dict() for f in failures(mirror, [batch_id])]
    with pytest.raises(SystemExit) as done:
        main(["failures", "--db", str(mirror.with_name("none.db"))])
    assert done.value.code == 2 and "run `omics-batch-runs sync` first" in capsys.readouterr().err
