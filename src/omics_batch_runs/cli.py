"""The `omics-batch-runs` command: a thin layer over the library and the emulator."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from . import __version__
from .checkpoint import CheckpointError
from .discovery import batch_filter
from .errors import InvalidInput
from .export import ExportProgress, OutputMissing, Source, run_export
from .logs import redact, setup_logging
from .options import FetchOptions, check_batch_id
from .progress import LiveProgress, summary
from .service import BATCH_STATUSES, SUBMISSION_STATUSES

EXIT_OK, EXIT_FAILED_BATCHES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str) -> NoReturn:
    """Bad input: reported by `main` on one line, exit 2, before any request."""
    raise click.UsageError(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omics-batch-runs")
def cli() -> None:
    """Fetch the runs of AWS HealthOmics run batches (ListRunsInBatch) as JSON lines."""


def _read_ids(args: Sequence[str], ids_file: str | None) -> list[str]:
    raw = list(args)
    if ids_file is not None:
        try:
            text = sys.stdin.read() if ids_file == "-" else Path(ids_file).read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not text"
            _fail(f"cannot read batch ids file {ids_file}: {reason}")
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            raw.extend(line.replace(",", " ").split())
    return [check_batch_id(b) for b in raw]


def _output_path(output: str, checkpoint: Path | None) -> Path | None:
    if output == "-":
        if checkpoint is not None:
            _fail("--checkpoint needs an output file (-o PATH): standard output cannot resume")
        return None
    path = Path(output)
    if path.suffix == ".zst":
        _fail("zstd output is not supported; use .gz or plain .jsonl")
    if path.is_dir():
        _fail(f"output {path} is a directory")
    if not path.parent.is_dir():
        _fail(f"output directory {path.parent} does not exist")
    return path


@cli.command()
@click.argument("batch_ids", nargs=-1)
@click.option("--batch-ids-file", metavar="PATH|-", help="Batch ids, one per line ('-': stdin).")
@click.option("--all-batches", is_flag=True, help="Export every batch ListBatch lists.")
@click.option("--batch-status", type=click.Choice(BATCH_STATUSES), help="With --all-batches.")
@click.option("--batch-name", help="With --all-batches: batches of this name.")
@click.option("--run-group-id", help="With --all-batches: batches of this run group.")
@click.option("--submission-status", type=click.Choice(SUBMISSION_STATUSES))
@click.option("--run-setting-id")
@click.option("--run-id")
@click.option("-o", "--output", default="-", show_default=True, help="PATH (.gz to compress) or -.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Save progress here; resume.")
@click.option("--concurrency", type=int, default=16, show_default=True)
@click.option("--page-size", type=int, default=100, show_default=True)
@click.option("--max-rps", type=float, help="Never exceed this many requests/s.")
@click.option("--endpoint-url", help="Another endpoint, such as a running emulator.")
@click.option("--region", help="AWS Region (else AWS_REGION, the profile, ...).")
@click.option("--profile", help="AWS profile (else AWS_PROFILE, default).")
@click.option("--no-progress", is_flag=True, help="No progress bar, even on a terminal.")
@click.option("--emulator", is_flag=True, help="Export from an embedded emulator with demo data.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
def export(**kw: Any) -> None:
    """Stream every run of the given batches out as JSON lines.

    Exit status: 0 all batches complete; 1 some failed (the others are complete);
    2 bad usage or input; 130 interrupted (resume with the same command).
    """
    checkpoint: Path | None = kw["checkpoint"]
    ids = _read_ids(kw["batch_ids"], kw["batch_ids_file"])
    discover_flags = {
        "status": kw["batch_status"],
        "name": kw["batch_name"],
        "run_group_id": kw["run_group_id"],
    }
    discover: dict[str, str] | None = None
    if kw["all_batches"] or (kw["emulator"] and not ids):
        if ids:
            _fail("give batch ids or --all-batches, not both")
        discover = batch_filter(**discover_flags)
    elif any(v is not None for v in discover_flags.values()):
        _fail("--batch-status, --batch-name and --run-group-id need --all-batches")
    elif not ids:
        _fail("no batch ids: give some, --batch-ids-file, or --all-batches")
    options = FetchOptions(
        concurrency=kw["concurrency"],
        page_size=kw["page_size"],
        submission_status=kw["submission_status"],
        run_setting_id=kw["run_setting_id"],
        run_id=kw["run_id"],
        max_rps=kw["max_rps"],
    )
    if kw["emulator"] and kw["endpoint_url"]:
        _fail("--emulator runs its own endpoint; drop --endpoint-url")
    output = _output_path(kw["output"], checkpoint)
    console = Console(stderr=True)
    setup_logging(kw["log_level"], kw["log_format"], console)
    show = console.is_terminal and not kw["no_progress"]
    code = anyio.run(
        _export,
        Source(tuple(ids), discover),
        options,
        output,
        checkpoint,
        kw,
        console,
        show,
    )
    sys.exit(code)


async def _export(
    source: Source,
    options: FetchOptions,
    output: Path | None,
    checkpoint: Path | None,
    kw: dict[str, Any],
    console: Console,
    show: bool,
) -> int:
    try:
        session = AioSession(profile=kw["profile"])
        if kw["emulator"]:
            session.set_credentials("emulator", "emulator")
        elif await session.get_credentials() is None:
            _fail("no AWS credentials found: set AWS_PROFILE, --profile or AWS_* variables")
    except BotoCoreError as e:  # an unknown profile, a broken config file...
        _fail(redact(str(e)))
    interrupted = False
    progress = ExportProgress()
    errors: list[Exception] = []
    async with _endpoint(kw) as endpoint, anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel()

        async def job() -> None:
            try:
                await run_export(
                    source,
                    options,
                    output,
                    checkpoint=checkpoint,
                    progress=progress,
                    session=session,
                    endpoint_url=endpoint,
                    region_name=kw["region"] or ("us-east-1" if kw["emulator"] else None),
                    want_totals=show,
                )
            except Exception as e:  # handled below, outside the task group
                errors.append(e)
            tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        if show:
            tg.start_soon(LiveProgress(progress, console).run)
        tg.start_soon(job)
    for error in errors:
        if isinstance(error, (CheckpointError, OutputMissing)):
            _fail(str(error))
        if isinstance(error, ClientError):  # ListBatch refused: nothing can be exported
            err = error.response.get("Error", {})
            console.print(f"error: {err.get('Code')}: {redact(str(err.get('Message', '')))}")
            return EXIT_FAILED_BATCHES
        if isinstance(error, BotoCoreError):  # no Region, an unreachable endpoint...
            _fail(redact(str(error)))
        raise error
    console.print(summary(progress, interrupted))
    for failure in progress.failed:
        console.print(f"failed: {redact(str(failure))}", markup=False, highlight=False)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_BATCHES if progress.failed else EXIT_OK


@asynccontextmanager
async def _endpoint(kw: dict[str, Any]) -> AsyncIterator[str | None]:
    """The endpoint to use: the embedded emulator's, the one given, or AWS's (None)."""
    if not kw["emulator"]:
        yield kw["endpoint_url"]
        return
    from .emulator import demo_service, run_emulator

    async with run_emulator(*demo_service()) as emulator:
        yield emulator.endpoint_url


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--batches", type=click.IntRange(0), default=20, show_default=True)
@click.option(
    "--runs-per-batch", type=click.IntRange(0, 100_000), help="Every batch this size (else mixed)."
)
@click.option("--submitting", type=click.IntRange(0), default=0, help="Batches still growing.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Quota, requests/s.")
@click.option("--burst", type=click.FloatRange(min=1), help="Quota burst (default: the rate).")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of requests failed, evenly as 408, 500 and dropped connections.",
)
@click.option("--timeout-rate", type=click.FloatRange(0, 1), help="Share answered 408.")
@click.option("--error-rate", type=click.FloatRange(0, 1), help="Share answered 500.")
@click.option("--drop-rate", type=click.FloatRange(0, 1), help="Share of connections dropped.")
@click.option("--seed", type=int, default=0, show_default=True)
def emulator(**kw: Any) -> None:
    """Serve a local HealthOmics run-batch emulator until Ctrl-C."""
    from .emulator import Behaviour, Dataset, serve_forever

    dataset = Dataset(
        seed=kw["seed"],
        batches=kw["batches"],
        runs_per_batch=kw["runs_per_batch"],
        submitting=kw["submitting"],
    )
    third = kw["fault_rate"] / 3

    def share(name: str) -> float:
        return float(third if kw[name] is None else kw[name])

    behaviour = Behaviour(
        rate=kw["rate"],
        burst=kw["burst"],
        latency_ms=kw["latency_ms"],
        timeout_rate=share("timeout_rate"),
        error_rate=share("error_rate"),
        drop_rate=share("drop_rate"),
        seed=kw["seed"],
    )

    def announce(running: Any) -> None:
        total = sum(b.total_runs for b in dataset.batches)
        click.echo(running.endpoint_url, err=False)
        click.echo(
            f"emulating HealthOmics run batches: {len(dataset.batches)} batches, {total:,} runs."
            " Ctrl-C stops.",
            err=True,
        )
        sys.stdout.flush()

    try:
        serve_forever(dataset, behaviour, host=kw["host"], port=kw["port"], announce=announce)
    except OSError as e:
        _fail(f"cannot listen on {kw['host']}:{kw['port']}: {e.strerror}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: usage errors are one line on stderr and exit 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="omics-batch-runs", standalone_mode=False)
    except click.UsageError as e:
        click.echo(f"omics-batch-runs: error: {e.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except InvalidInput as e:
        click.echo(f"omics-batch-runs: error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    sys.exit(EXIT_OK)
