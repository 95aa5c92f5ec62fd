"""Bad input: one clear line, exit 2, no request sent and no file written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
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
        (["--latency-ms", "nan"], "nan is not a finite number"),
        (["--timeout-rate", "0.5", "--error-rate", "0.4", "--drop-rate", "0.3"], "add up to"),
        (["--fault-rate", "0.9", "--drop-rate", "0.9"], "add up to more than 1"),
        (["--batches", "100000000"], "not in the range 0<=x<=1000000"),
        (["--fault-rate", "nan"], "nan is not a finite number"),
        (["--burst", "5"], "--burst needs --rate"),
    ],
)
def test_bad_emulator_input(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(["emulator", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abc"], "invalid batch id 'abc'"),
        (["1" * 19], "invalid batch id"),
        (["{id}", "--page-size", "101"], "'--page-size': 101 is not in the range 1<=x<=100"),
        (["{id}", "--page-size", "0"], "'--page-size': 0 is not in the range"),
        (["{id}", "--run-id", "1", "--run-setting-id", "x"], "got --run-setting-id and --run-id"),
        (["{id}", "--submission-status", "DONE"], "'DONE' is not one of"),
        (["{id}", "--concurrency", "0"], "'--concurrency': 0 is not in the range 1<=x<=256"),
        (["{id}", "--concurrency", "many"], "'many' is not a valid integer"),
        (["--batch-ids-file", "{tmp}/missing.txt"], "cannot read --batch-ids-file"),
        ([], "no batch ids"),
        (["--batch-ids-file", "{tmp}/empty.txt"], "no batch ids"),
        (["{id}", "--all-batches"], "not both"),
        (["--all-batches", "--batch-status", "DONE"], "'DONE' is not one of"),
        (
            ["--all-batches", "--batch-name", "a", "--run-group-id", "1"],
            "got --batch-name and --run-group-id",
        ),
        (["{id}", "--batch-status", "PROCESSED"], "need --all-batches"),
        (["{id}", "--max-rps", "0"], "'--max-rps': 0.0 is not in the range 0.001<=x<=100000"),
        (["{id}", "--max-rps", "1e-300"], "is not in the range 0.001<=x<=100000"),
        (["{id}", "--concurrency", "100000"], "not in the range 1<=x<=256"),
        (["{id}", "--bogus"], "No such option"),
        (["{id}", "--run-setting-id", ""], "--run-setting-id must not be empty"),
        (["{id}", "--endpoint-url", "127.0.0.1:18080"], "is not a URL (give its scheme)"),
        (["{id}", "--endpoint-url", "http://127.0.0.1:99999"], "Port out of range"),
        (["{id}", "--endpoint-url", "http://127.0.0.1:abc"], "is not a URL"),
        (["{id}", "--endpoint-url", "ftp://127.0.0.1:1"], "is not a URL (http or https only)"),
        (["{id}", "--endpoint-url", "http://[::1"], "Invalid IPv6 URL"),
        (["{id}", "--endpoint-url", "http:// 127.0.0.1:1"], "is not a URL"),
        (["{id}", "--endpoint-url", "http://127.0.0.1:1/ "], "it holds a space"),
        (["{id}", "--endpoint-url", "http://u:pw@127.0.0.1:1"], "no user or password in it"),
        (["{id}", "--max-rps", "inf"], "'--max-rps': inf is not in the range"),
        (["{id}", "--region", "us east 1"], "doesn't match a supported format"),
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
    if "--endpoint-url" not in argv:
        argv += ["--endpoint-url", served.endpoint_url]
    code = run(["export", *argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("omics-batch-runs: error: ")
    assert "Traceback" not in err and "pw@" not in err
    assert not out.exists()
    assert served.counters.requests == {}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{tmp}/no/such/dir/out.jsonl", "No such file or directory"),
        ("{tmp}", "is a directory"),
        ("{tmp}/new/", "is a directory"),
        ("{tmp}/out.jsonl.zst", "zstd output is not supported"),
        ("{tmp}/ids.txt/out.jsonl", "cannot write output"),
        ("", "-o must name a file"),
    ],
)
def test_bad_output(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, message: str
) -> None:
    path = output.format(tmp=tmp_path)
    (tmp_path / "ids.txt").write_text("1\n")
    code = run(["export", served.batch_ids[0], "-o", path, "--endpoint-url", served.endpoint_url])
    assert code == 2
    assert message in capsys.readouterr().err
    assert served.counters.requests == {}
    assert [p.name for p in tmp_path.iterdir()] == ["ids.txt"]


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


@pytest.mark.parametrize(
    ("output", "checkpoint", "message"),
    [
        (
            "/dev/null",
            "{tmp}/ck.json",
            "needs a regular output file; /dev/null cannot be truncated",
        ),
        ("{tmp}/same.jsonl", "{tmp}/same.jsonl", "must be different files"),
        ("{tmp}/out.jsonl", "{tmp}/no/dir/ck.json", "checkpoint directory"),
        ("{tmp}/out.jsonl", "{tmp}", "is not a file name"),
        ("{tmp}/out.jsonl", "{tmp}/fifo", "is not a regular file"),
        ("{tmp}/out.jsonl", "/proc/ck.json", "cannot write checkpoint /proc/ck.json"),
    ],
)
def test_bad_checkpoint(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    output: str,
    checkpoint: str,
    message: str,
) -> None:
    out, ck = output.format(tmp=tmp_path), checkpoint.format(tmp=tmp_path)
    if ck.endswith("fifo"):
        os.mkfifo(ck)  # opening it to read would wait for a writer for ever
    argv = ["export", served.batch_ids[0], "-o", out, "--checkpoint", ck]
    code = run([*argv, "--endpoint-url", served.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert served.counters.requests == {}
    assert [p.name for p in tmp_path.iterdir()] in ([], ["fifo"])


def test_a_fifo_output_with_a_checkpoint_is_refused_without_waiting_for_a_reader(
    served: Emulator, tmp_path: Path
) -> None:
    fifo = tmp_path / "runs.fifo"
    os.mkfifo(fifo)  # no reader: opening it to write would wait for one for ever
    argv = ["export", served.batch_ids[0], "-o", str(fifo), "--checkpoint", str(tmp_path / "ck")]
    command = [sys.executable, "-m", "omics_batch_runs", *argv]
    done = subprocess.run(
        [*command, "--endpoint-url", served.endpoint_url], capture_output=True, timeout=60
    )
    assert done.returncode == 2 and b"needs a regular output file" in done.stderr
    assert served.counters.requests == {} and not (tmp_path / "ck").exists()


def test_an_endpoint_from_the_environment_needs_a_scheme_too(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_OMICS", served.endpoint_url.removeprefix("http://"))
    code = run(["export", served.batch_ids[0], "-o", str(tmp_path / "o.jsonl")])
    assert code == 2
    assert "AWS_ENDPOINT_URL_OMICS" in capsys.readouterr().err
    assert served.counters.requests == {}


def test_no_arguments_shows_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: omics-batch-runs") and "export" in err


def test_every_option_has_help() -> None:
    from omics_batch_runs.cli import cli

    for command in cli.commands.values():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts} has no help"


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


def _only_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str) -> None:
    """Credentials from this AWS config file alone, not from the environment."""
    (tmp_path / "config").write_text(config)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


def test_an_sso_profile_not_logged_in_is_one_line_before_any_request(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _only_profile(
        tmp_path,
        monkeypatch,
        "[profile sso]\nregion = us-east-1\nsso_start_url = https://x.awsapps.com/start\n"
        "sso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = r\n",
    )
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached SSO token
    out = tmp_path / "out.jsonl"
    argv = ["export", served.batch_ids[0], "--profile", "sso", "-o", str(out)]
    code = run([*argv, "--endpoint-url", served.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2 and "SSO" in err and err.count("\n") == 1, err
    assert not out.exists() and served.counters.requests == {}


def test_a_credential_process_printing_garbage_is_one_line_before_any_request(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _only_profile(tmp_path, monkeypatch, "[profile garbage]\ncredential_process = echo not json\n")
    argv = ["export", served.batch_ids[0], "--profile", "garbage", "-o", str(tmp_path / "o")]
    code = run([*argv, "--endpoint-url", served.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2 and "cannot load the AWS credentials" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists() and served.counters.requests == {}


def test_a_control_character_in_a_key_is_one_line_before_any_request(
    served: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEMULATOR\nEXAMPLE")
    argv = ["export", served.batch_ids[0], "-o", "/dev/null"]
    code = run([*argv, "--endpoint-url", served.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2 and "control character" in err and err.count("\n") == 1, err
    assert "EXAMPLE" not in err and served.counters.requests == {}


def test_unknown_profile_is_one_line(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["export", served.batch_ids[0], "--profile", "nope", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_no_region_is_one_line_and_nothing_is_created(
    served: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    out = tmp_path / "out.jsonl"
    code = run(
        ["export", served.batch_ids[0], "-o", str(out), "--endpoint-url", served.endpoint_url]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no AWS Region" in err and err.count("\n") == 1
    assert not out.exists() and served.counters.requests == {}


def test_the_region_may_come_from_aws_region(
    served: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore reads AWS_DEFAULT_REGION only; the error above names AWS_REGION.
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    out = tmp_path / "out.jsonl"
    code = run(
        ["export", served.batch_ids[0], "-o", str(out), "--endpoint-url", served.endpoint_url]
    )
    assert code == 0 and out.read_bytes()


def test_a_closed_standard_output_is_refused(served: Emulator) -> None:
    command = [sys.executable, "-m", "omics_batch_runs", "export", served.batch_ids[0]]
    command += ["--endpoint-url", served.endpoint_url]
    done = subprocess.run(
        command, stderr=subprocess.PIPE, text=True, timeout=60, preexec_fn=lambda: os.close(1)
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "omics-batch-runs: error: standard output is closed; give -o PATH"
    ]
    assert served.counters.requests == {}
