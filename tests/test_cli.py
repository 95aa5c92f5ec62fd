"""Bad input: one clear line, exit 2, no request sent and no file written."""

from __future__ import annotations

from pathlib import Path

import pytest

from omics_batch_runs.cli import main
from omics_batch_runs.emulator import Emulator


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    code = done.value.code
    return code if isinstance(code, int) else 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert "omics-batch-runs, version" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abc"], "invalid batch id 'abc'"),
        (["1" * 19], "invalid batch id"),
        (["{id}", "--page-size", "101"], "page size must be 1 to 100"),
        (["{id}", "--page-size", "0"], "page size must be 1 to 100"),
        (["{id}", "--run-id", "1", "--run-setting-id", "x"], "at most one filter"),
        (["{id}", "--submission-status", "DONE"], "'DONE' is not one of"),
        (["{id}", "--concurrency", "0"], "concurrency must be at least 1"),
        (["{id}", "--concurrency", "many"], "'many' is not a valid integer"),
        (["--batch-ids-file", "{tmp}/missing.txt"], "cannot read batch ids file"),
        ([], "no batch ids"),
        (["--batch-ids-file", "{tmp}/empty.txt"], "no batch ids"),
        (["{id}", "--all-batches"], "not both"),
        (["--all-batches", "--batch-status", "DONE"], "'DONE' is not one of"),
        (["--all-batches", "--batch-name", "a", "--run-group-id", "1"], "at most one batch filter"),
        (["{id}", "--batch-status", "PROCESSED"], "need --all-batches"),
        (["{id}", "--max-rps", "0"], "max rps must be positive"),
        (["{id}", "--bogus"], "No such option"),
    ],
)
def test_bad_input(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    out = tmp_path / "out.jsonl"
    argv = [a.format(id=served.batch_ids[0], tmp=tmp_path) for a in args]
    code = run(["export", *argv, "-o", str(out), "--endpoint-url", served.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("omics-batch-runs: error: ")
    assert "Traceback" not in err
    assert not out.exists()
    assert served.counters.requests == {}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{tmp}/no/such/dir/out.jsonl", "does not exist"),
        ("{tmp}", "is a directory"),
        ("{tmp}/out.jsonl.zst", "zstd output is not supported"),
    ],
)
def test_bad_output(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, message: str
) -> None:
    path = output.format(tmp=tmp_path)
    code = run(["export", served.batch_ids[0], "-o", path, "--endpoint-url", served.endpoint_url])
    assert code == 2
    assert message in capsys.readouterr().err
    assert served.counters.requests == {}
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_needs_a_file(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ck = tmp_path / "ck.json"
    code = run(
        [
            "export",
            served.batch_ids[0],
            "--checkpoint",
            str(ck),
            "--endpoint-url",
            served.endpoint_url,
        ]
    )
    assert code == 2
    assert "--checkpoint needs an output file" in capsys.readouterr().err
    assert not ck.exists()
    assert served.counters.requests == {}


def test_no_credentials_is_one_line(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = tmp_path / "out.jsonl"
    code = run(
        ["export", served.batch_ids[0], "-o", str(out), "--endpoint-url", served.endpoint_url]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no AWS credentials" in err and err.count("\n") == 1
    assert not out.exists()


def test_unknown_profile_is_one_line(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["export", served.batch_ids[0], "--profile", "nope", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
