"""The resubmit input: accepted by StartRunBatch (AWS CLI, boto3) on the emulator, exactly the
failed runs with their original settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from omics_batch_runs import Selection, sync
from omics_batch_runs.cli import main
from omics_batch_runs.emulator import Emulator
from omics_batch_runs.failures import failures

from .conftest import boto3_client, paginate_with_boto3


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    code = done.value.code
    return code if isinstance(code, int) else 1


def original_settings(emulator: Emulator, batch_id: str) -> list[dict[str, Any]]:
    """What the lab gave the batch: every run's own settings, awkward characters included."""
    return [
        {
            "runSettingId": r["runSettingId"],
            "name": f"run {r['runSettingId']}",
            "parameters": {"bam": f"s3://lab/in/{r['runSettingId']}.bam", "note": 'é, "q"\n'},
            "priority": 3,
        }
        for r in paginate_with_boto3(emulator.endpoint_url, batch_id)
    ]


def batch_with_failures(emulator: Emulator, most: int, least: int = 1) -> str:
    for b in emulator.dataset.batches:
        n = sum(1 for r in emulator.dataset.runs(b) if r["submissionStatus"] == "FAILED")
        if least <= n <= most:
            return b.id
    raise AssertionError("no such batch")


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_the_aws_cli_starts_exactly_the_failed_runs_with_their_settings(
    mirror: Path, served: Emulator, tmp_path: Path
) -> None:
    if shutil.which("aws") is None:
        pytest.skip("the AWS CLI is not installed here")
    batch_id = batch_with_failures(served, most=100)
    settings = original_settings(served, batch_id)
    argv = ["resubmit", "--db", str(mirror), "--batch", batch_id, "-o", str(tmp_path / "r.json")]
    argv += ["--settings", str(write(tmp_path, "settings.json", settings))]
    assert run(argv) == 0
    request = json.loads((tmp_path / "r.json").read_text())
    failed = {f.run_setting_id for f in failures(mirror, [batch_id], runs=False)}
    sent = request["batchRunSettings"]["inlineSettings"]
    assert [s["runSettingId"] for s in sent] == [
        s["runSettingId"] for s in settings if s["runSettingId"] in failed
    ]
    assert sent == [s for s in settings if s["runSettingId"] in failed]  # unchanged values
    first_id = request["requestId"]
    assert run(argv) == 0 and json.loads((tmp_path / "r.json").read_text())["requestId"] == first_id
    env = {**os.environ, "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"}
    cli = ["aws", "omics", "start-run-batch", "--cli-input-json", f"file://{tmp_path}/r.json"]
    cli += ["--endpoint-url", served.endpoint_url, "--output", "json"]
    started = [json.loads(subprocess.run(cli, capture_output=True, text=True, env=env,
               check=True).stdout)["id"] for _ in range(2)]  # fmt: skip
    assert started[0] == started[1]  # the same file twice: one batch
    client = boto3_client(served.endpoint_url)
    assert client.get_batch(batchId=started[0])["totalRuns"] == len(failed)


def test_boto3_takes_it_as_keyword_arguments_and_over_100_goes_to_s3(
    mirror: Path, served: Emulator, tmp_path: Path
) -> None:
    batch_id = batch_with_failures(served, most=10_000, least=101)
    settings = write(tmp_path, "settings.json", original_settings(served, batch_id))
    base = ["resubmit", "--db", str(mirror), "--batch", batch_id, "--settings", str(settings)]
    out = tmp_path / "r.json"
    assert run([*base, "-o", str(out)]) == 2  # over 100: needs --settings-uri
    assert not out.exists()
    uri = "s3://lab/retry/settings.json"
    assert run([*base, "-o", str(out), "--settings-uri", uri]) == 0
    request = json.loads(out.read_text())
    assert request["batchRunSettings"] == {"s3UriSettings": uri}
    on_s3 = (tmp_path / "r.settings.json").read_bytes()
    served.put_object(uri, on_s3)
    answer = boto3_client(served.endpoint_url).start_run_batch(**request)
    failed = failures(mirror, [batch_id], runs=False)
    assert len(json.loads(on_s3)) == len(failed) > 100
    assert served.dataset.batch(answer["id"]).total_runs == len(failed)  # type: ignore[union-attr]


def test_choosing_by_reason_and_adding_run_failures(
    mirror: Path, served: Emulator, tmp_path: Path
) -> None:
    batch_id = batch_with_failures(served, most=10_000, least=30)
    settings = write(tmp_path, "settings.json", original_settings(served, batch_id))
    base = ["resubmit", "--db", str(mirror), "--batch", batch_id, "--settings", str(settings)]
    base += ["--settings-uri", "s3://lab/s.json", "-o", str(tmp_path / "r.json")]

    def chosen(*extra: str) -> set[str]:
        assert run([*base, *extra]) == 0
        return {s["runSettingId"] for s in json.loads((tmp_path / "r.settings.json").read_text())}

    every = failures(mirror, [batch_id])
    timeouts = {f.run_setting_id for f in every if f.reason == "RequestTimeoutException"}
    assert chosen("--reason", "RequestTimeoutException") == timeouts
    submission = {f.run_setting_id for f in every if f.stage == "submission"}
    assert chosen() == submission
    assert chosen("--include-run-failures") == {f.run_setting_id for f in every} > submission


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"not": "a list"}, "is not a list of run settings"),
        ([{"name": "no id"}], "is not a list of run settings"),
        ([{"runSettingId": "sample-999999"}], "the settings file lacks runSettingId"),
        ([{"runSettingId": "a"}, {"runSettingId": "a"}], "lists runSettingId a twice"),
    ],
)
def test_a_settings_file_that_does_not_fit_writes_nothing(
    mirror: Path,
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    settings: Any,
    message: str,
) -> None:
    batch_id = batch_with_failures(served, most=100)
    out = tmp_path / "r.json"
    argv = ["resubmit", "--db", str(mirror), "--batch", batch_id, "-o", str(out)]
    assert run([*argv, "--settings", str(write(tmp_path, "s.json", settings))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_the_original_settings_are_never_overwritten(
    mirror: Path, served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = batch_with_failures(served, most=100)
    settings = write(tmp_path, "settings.json", original_settings(served, batch_id))
    before = settings.read_bytes()
    argv = ["resubmit", "--db", str(mirror), "--batch", batch_id, "--settings", str(settings)]
    assert run([*argv, "-o", str(settings)]) == 2
    assert run([*argv, "-o", str(tmp_path / "settings.json.json")]) == 0  # beside: fine
    assert "would overwrite --settings" in capsys.readouterr().err
    assert settings.read_bytes() == before


def test_corrected_settings_are_a_new_request(
    mirror: Path, served: Emulator, tmp_path: Path
) -> None:
    batch_id = batch_with_failures(served, most=100)
    settings = original_settings(served, batch_id)
    argv = ["resubmit", "--db", str(mirror), "--batch", batch_id, "-o", str(tmp_path / "r.json")]
    assert run([*argv, "--settings", str(write(tmp_path, "a.json", settings))]) == 0
    first = json.loads((tmp_path / "r.json").read_text())["requestId"]
    for entry in settings:
        entry["parameters"]["bam"] += ".fixed"
    assert run([*argv, "--settings", str(write(tmp_path, "b.json", settings))]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["requestId"] != first


def test_a_mirror_of_all_batches_keeps_what_a_resubmission_needs(
    tmp_path: Path, served: Emulator
) -> None:
    """ListBatch says nothing of a batch's settings: `--run-status` describes each batch
    (GetBatch), and the mirror keeps it, so it can be resubmitted even after DeleteBatch."""
    db = tmp_path / "m.db"
    listing = Selection(discover={})
    anyio.run(lambda: sync(db, listing, endpoint_url=served.endpoint_url))
    batch_id = batch_with_failures(served, most=100)
    settings = write(tmp_path, "s.json", original_settings_of(served, batch_id))
    argv = ["resubmit", "--db", str(db), "--batch", batch_id, "--settings", str(settings)]
    assert run([*argv, "-o", str(tmp_path / "r.json")]) == 2  # says: sync --run-status first
    anyio.run(lambda: sync(db, listing, endpoint_url=served.endpoint_url, run_status=True))
    served.delete_batch(batch_id)
    assert run([*argv, "-o", str(tmp_path / "r.json")]) == 0


def original_settings_of(emulator: Emulator, batch_id: str) -> list[dict[str, Any]]:
    batch = emulator.app.dataset._by_id[batch_id]  # deleted upstream: read the emulator's data
    return [{"runSettingId": r["runSettingId"]} for r in emulator.dataset.runs(batch)]
