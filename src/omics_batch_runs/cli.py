"""The `omics-batch-runs` command: a thin layer over the library and the emulator."""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click
import orjson
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)
from botocore.utils import validate_region_name
from rich.console import Console

from . import __version__
from .checkpoint import CheckpointError, CheckpointWriteError
from .client import check_endpoint_url
from .discovery import batch_filter
from .errors import BatchError, InvalidInput, error_code, error_message
from .export import ExportProgress, prepare, run_export
from .failures import as_csv, failures
from .logs import json_line, redact, setup_logging
from .mirror import MirrorError
from .options import MAX_MAX_RPS, MIN_MAX_RPS, FetchOptions, Selection, check_batch_id
from .progress import LiveProgress, Report, failures_table, summary, sync_summary
from .resubmit import read_settings, resubmission
from .service import BATCH_STATUSES, FAILURE_REASONS, SUBMISSION_STATUSES
from .sink import OutputClosed, OutputError, OutputRefused
from .sync import SyncResult, sync

EXIT_OK, EXIT_FAILED_BATCHES, EXIT_USAGE, EXIT_OUTPUT, EXIT_SERVICE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
MAX_CONCURRENCY = 256


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
            if ids_file == "-":
                text = sys.stdin.read().removeprefix("\ufeff")
            else:  # an editor's byte-order mark is not an id
                text = Path(ids_file).read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            _fail(f"cannot read --batch-ids-file {ids_file}: {reason}")
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            raw.extend(line.replace(",", " ").split())
    return [check_batch_id(b) for b in raw]


def _one_of(kw: dict[str, Any], flags: Sequence[str]) -> None:
    given = [f for f in flags if kw[_key(f)] is not None]
    if len(given) > 1:
        _fail(f"give at most one of {', '.join(flags)}; got {' and '.join(given)}")


def _endpoint_url(given: str | None) -> str | None:
    """The endpoint: --endpoint-url, else AWS_ENDPOINT_URL_OMICS or AWS_ENDPOINT_URL, as the
    AWS CLI reads them; any of them turns botocore's `workflows-` host prefix off."""
    url, name = given, "--endpoint-url"
    if url is None and os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        for name in ("AWS_ENDPOINT_URL_OMICS", "AWS_ENDPOINT_URL"):
            if url := os.environ.get(name):
                break
    if url is None:
        return None
    check_endpoint_url(url, name)
    return url


RUN_FILTERS = ("--submission-status", "--run-setting-id", "--run-id")
BATCH_FILTERS = ("--batch-status", "--batch-name", "--run-group-id")


_SHARED = (
    click.argument("batch_ids", nargs=-1),
    click.option("--batch-ids-file", metavar="PATH|-", help="Batch ids, one a line ('-': stdin)."),
    click.option("--all-batches", is_flag=True, help="Every batch ListBatch lists."),
    click.option(
        "--batch-status", type=click.Choice(BATCH_STATUSES), help="With --all-batches: this status."
    ),
    click.option("--batch-name", help="With --all-batches: batches of this name."),
    click.option("--run-group-id", help="With --all-batches: batches of this run group."),
    click.option(
        "--concurrency",
        type=click.IntRange(1, MAX_CONCURRENCY),
        default=16,
        show_default=True,
        help="Requests in flight at most.",
    ),
    click.option(
        "--max-rps",
        type=click.FloatRange(MIN_MAX_RPS, MAX_MAX_RPS),
        help="Never exceed this many requests/s (leave quota to other tools).",
    ),
    click.option(
        "--max-attempts",
        type=click.IntRange(1, 100),
        default=10,
        show_default=True,
        help="Tries per request before its batch fails (throttles, timeouts, 5xx, network).",
    ),
    click.option(
        "--endpoint-url",
        help="Another endpoint, such as an emulator (else AWS_ENDPOINT_URL_OMICS).",
    ),
    click.option("--region", help="AWS Region (else AWS_REGION, the profile, ...)."),
    click.option("--profile", help="AWS profile (else AWS_PROFILE, default)."),
    click.option("--no-progress", is_flag=True, help="No progress bar, even on a terminal."),
    click.option("--emulator", is_flag=True, help="Use an embedded emulator with demo data."),
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        default="warning",
        show_default=True,
        help="Least severe log shown on stderr.",
    ),
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json: every stderr line one JSON object (summary included), no progress bar.",
    ),
)


def _shared(command: Callable[..., None]) -> Callable[..., None]:
    """The options `export` and `sync` share: which batches, where, how fast, what is said."""
    for option in reversed(_SHARED):
        command = option(command)
    return command


def _selection(kw: dict[str, Any], *flags: str) -> tuple[list[str], dict[str, str] | None]:
    """The batch ids given, or the ListBatch filter of --all-batches; checked."""
    ids = _read_ids(kw["batch_ids"], kw["batch_ids_file"])
    for flag in ("--batch-name", "--run-group-id", *flags):
        if kw[_key(flag)] == "":
            _fail(f"{flag} must not be empty")
    _one_of(kw, BATCH_FILTERS)
    discover: dict[str, str] | None = None
    if kw["all_batches"] or (kw["emulator"] and not ids):
        if ids:
            _fail("give batch ids or --all-batches, not both")
        discover = batch_filter(kw["batch_status"], kw["batch_name"], kw["run_group_id"])
    elif any(kw[_key(f)] is not None for f in BATCH_FILTERS):
        _fail(f"{', '.join(BATCH_FILTERS)} need --all-batches")
    elif not ids:
        _fail("no batch ids: give some, --batch-ids-file, or --all-batches")
    if kw["emulator"] and kw["endpoint_url"]:
        _fail("--emulator runs its own endpoint; drop --endpoint-url")
    return ids, discover


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _stderr(kw: dict[str, Any]) -> tuple[Report, bool]:
    """Logging set up; the report for the end, and whether to draw progress."""
    console = Console(stderr=True, soft_wrap=True)  # off a terminal: long lines stay whole
    setup_logging(kw["log_level"], kw["log_format"], console)
    report = Report(console, json=kw["log_format"] == "json")
    return report, console.is_terminal and not kw["no_progress"] and not report.json


@cli.command()
@_shared
@click.option(
    "--submission-status",
    type=click.Choice(SUBMISSION_STATUSES),
    help="Only runs whose submission ended so.",
)
@click.option("--run-setting-id", help="Only the run of this runSettingId (your sample).")
@click.option("--run-id", help="Only the run of this HealthOmics runId.")
@click.option(
    "-o", "--output", default="-", show_default=True, help="PATH (.gz compresses), or - (stdout)."
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Save progress here and resume from it (needs a regular -o file).",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=100,
    show_default=True,
    help="Runs a request (ListRunsInBatch's maxItems).",
)
def export(**kw: Any) -> None:
    """Stream every run of the given batches out as JSON lines.

    Exit status: 0 all batches complete (or the reader of stdout closed it, as `| head`
    does); 1 some batches failed (the others are complete); 2 bad usage or input; 3 the
    output or checkpoint could not be written (rerun the same command once fixed);
    4 the service could not be used (unreachable, or ListBatch refused); 130 interrupted
    (with --checkpoint, the same command resumes).
    """
    ids, discover = _selection(kw, *RUN_FILTERS[1:])
    _one_of(kw, RUN_FILTERS)
    endpoint = None if kw["emulator"] else _endpoint_url(kw["endpoint_url"])
    options = FetchOptions(
        concurrency=kw["concurrency"],
        page_size=kw["page_size"],
        submission_status=kw["submission_status"],
        run_setting_id=kw["run_setting_id"],
        run_id=kw["run_id"],
        max_rps=kw["max_rps"],
        max_attempts=kw["max_attempts"],
    )
    report, show = _stderr(kw)
    source = Selection(tuple(ids), discover)
    code = anyio.run(_export, source, options, endpoint, kw, report, show)
    sys.exit(code)


def _unprintable(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


async def _session(kw: dict[str, Any]) -> AioSession:
    """The session, with credentials and a valid Region, or one line and exit 2."""
    try:
        session = AioSession(profile=kw["profile"])
        if kw["emulator"]:
            session.set_credentials("emulator", "emulator")
            kw["region"] = kw["region"] or "us-east-1"
        else:
            # Loaded now (an SSO login, a role to assume), not at the first request; and
            # checked: a stray newline in a key would fail every request, after retries.
            try:
                credentials = await session.get_credentials()
                frozen = credentials and await credentials.get_frozen_credentials()
            except BotoCoreError:
                raise
            except Exception as e:  # a credential_process printing garbage, expired keys...
                _fail(redact(f"cannot load the AWS credentials: {type(e).__name__}: {e}"))
            if not frozen:
                _fail("no AWS credentials found: set AWS_PROFILE, --profile or AWS_* variables")
            if any(_unprintable(part) for part in frozen if part):
                _fail("the AWS credentials hold a control character (a stray newline?)")
        # botocore reads AWS_DEFAULT_REGION only; the AWS CLI v2 and the SDKs read AWS_REGION.
        region = (
            kw["region"] or os.environ.get("AWS_REGION") or session.get_config_variable("region")
        )
        if not region:
            _fail("no AWS Region: give --region, or set AWS_REGION or the profile's region")
        validate_region_name(region)
        kw["region"] = region
    except BotoCoreError as e:  # an unknown profile, a broken config file, a bad Region...
        _fail(redact(str(e)))
    return session


async def _export(
    source: Selection,
    options: FetchOptions,
    endpoint_url: str | None,
    kw: dict[str, Any],
    report: Report,
    show: bool,
) -> int:
    session = await _session(kw)
    try:
        prepared = prepare(source, options, kw["output"], kw["checkpoint"])
    except (CheckpointError, OutputRefused) as e:
        _fail(str(e))
    progress = ExportProgress()
    errors: list[Exception] = []
    counting_totals = show and not any(options.filters().values())

    async def job(endpoint: str | None) -> None:
        try:
            await run_export(
                source,
                options,
                kw["output"],
                checkpoint=kw["checkpoint"],
                progress=progress,
                session=session,
                endpoint_url=endpoint,
                region_name=kw["region"],
                want_totals=counting_totals,
                prepared=prepared,
            )
        except Exception as e:  # handled below, outside the task group
            errors.append(e)

    interrupted = await _run_job(kw, endpoint_url, job, progress, report, show, counting_totals)
    for error in errors:
        return _fatal(error, report)
    if progress.batches_total == 0 and source.discover is not None:
        report.line("warning", "no batch matched --all-batches" + _described(source.discover))
        return EXIT_OK
    state = "complete"
    if interrupted:
        state = (
            "interrupted (resume with the same command)"
            if kw["checkpoint"]
            else "interrupted (nothing saved to resume from: the same command starts over;"
            " add --checkpoint to resume)"
        )
    elif progress.failed:
        state = f"{len(progress.failed)} batch(es) failed"
    report.summary(summary(progress, state))
    for failure in progress.failed:
        report.failed(failure)
    if interrupted:
        return EXIT_INTERRUPTED
    if (
        progress.failed
        and all(_unreachable(f) for f in progress.failed)
        and not progress.runs_written
    ):
        return EXIT_SERVICE
    return EXIT_FAILED_BATCHES if progress.failed else EXIT_OK


def _described(discover: dict[str, str]) -> str:
    flags = dict(zip(("status", "name", "runGroupId"), BATCH_FILTERS, strict=True))
    return "".join(f" {flags[k]} {v}" for k, v in discover.items())


def _unreachable(failure: BatchError) -> bool:
    return isinstance(failure.error, (EndpointConnectionError, ConnectTimeoutError))


def _fatal(error: Exception, report: Report) -> int:
    """An error that ended the whole export: one line, and its exit status."""
    if isinstance(error, OutputClosed):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return EXIT_OK
    if isinstance(error, (OutputError, CheckpointWriteError)):
        report.line("error", str(error))
        return EXIT_OUTPUT
    if isinstance(error, (ClientError, BotoCoreError)):  # ListBatch refused, no Region, ...
        report.line("error", f"{error_code(error)}: {redact(error_message(error))}")
        return EXIT_SERVICE
    raise error


@cli.command("sync")
@_shared
@click.option(
    "--db",
    required=True,
    type=click.Path(path_type=Path),
    help="The mirror: an SQLite file, made if new.",
)
@click.option("--follow", is_flag=True, help="Keep syncing until every batch has settled.")
@click.option(
    "--run-status",
    is_flag=True,
    help="Also each run's execution status (ListRuns), until its batch's runs have all ended.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="With --follow: seconds between polls of the batches still moving.",
)
def sync_command(**kw: Any) -> None:
    """Mirror batches and their runs into an SQLite database, listing only what changed.

    Exit status: 0 every batch mirrored (with --follow: and settled); 1 some batches failed;
    2 bad usage or input (the database included); 4 the service could not be used;
    130 interrupted (run it again: it goes on where it stopped).
    """
    ids, discover = _selection(kw)
    endpoint = None if kw["emulator"] else _endpoint_url(kw["endpoint_url"])
    options = FetchOptions(
        concurrency=kw["concurrency"], max_rps=kw["max_rps"], max_attempts=kw["max_attempts"]
    )
    report, show = _stderr(kw)
    code = anyio.run(_sync, Selection(tuple(ids), discover), options, endpoint, kw, report, show)
    sys.exit(code)


async def _sync(
    selection: Selection,
    options: FetchOptions,
    endpoint_url: str | None,
    kw: dict[str, Any],
    report: Report,
    show: bool,
) -> int:
    session = await _session(kw)
    progress = ExportProgress()
    outcome: list[SyncResult | Exception] = []

    async def job(endpoint: str | None) -> None:
        try:
            outcome.append(
                await sync(
                    kw["db"],
                    selection,
                    options,
                    session=session,
                    endpoint_url=endpoint,
                    region_name=kw["region"],
                    follow=kw["follow"],
                    poll_interval=kw["poll_interval"],
                    run_status=kw["run_status"],
                    progress=progress,
                )
            )
        except Exception as e:
            outcome.append(e)

    interrupted = await _run_job(kw, endpoint_url, job, progress, report, show, counting=False)
    if not outcome:  # interrupted before it could say anything
        report.line("warning", "sync interrupted; run it again to go on")
        return EXIT_INTERRUPTED
    result = outcome[0]
    if isinstance(result, MirrorError):
        _fail(str(result))
    if isinstance(result, Exception):
        return _fatal(result, report)
    state = "interrupted (run it again to go on)" if interrupted else "complete"
    if result.failed and not interrupted:
        state = f"{len(result.failed)} batch(es) failed"
    report.summary(sync_summary(result, progress, state), "sync")
    for failure in result.failed:
        report.failed(failure)
    if interrupted:
        return EXIT_INTERRUPTED
    if (
        result.failed
        and len(result.failed) == result.batches
        and all(map(_unreachable, result.failed))
    ):
        return EXIT_SERVICE
    return EXIT_FAILED_BATCHES if result.failed else EXIT_OK


async def _run_job(
    kw: dict[str, Any],
    endpoint_url: str | None,
    job: Callable[[str | None], Awaitable[None]],
    progress: ExportProgress,
    report: Report,
    show: bool,
    counting: bool,
) -> bool:
    """Run `job` with the endpoint, progress on a terminal, and SIGINT/SIGTERM stopping it;
    returns whether it was interrupted."""
    interrupted = False
    async with _endpoint(kw, endpoint_url) as endpoint, anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel()

        async def run() -> None:
            await job(endpoint)
            tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        if show:
            tg.start_soon(LiveProgress(progress, report.console, counting).run)
        tg.start_soon(run)
    return interrupted


@cli.command("failures")
@click.argument("batch_ids", nargs=-1)
@click.option("--db", required=True, type=click.Path(path_type=Path), help="The mirror.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "jsonl"]),
    help="table (grouped by reason; the default on a terminal), csv or jsonl (a row a run).",
)
@click.option(
    "--submissions-only", is_flag=True, help="Leave out runs that failed after submission."
)
def failures_command(**kw: Any) -> None:
    """Every run that did not make it: failed submissions, and runs that failed or were
    cancelled (with `sync --run-status`). Reads the mirror only; sends no request."""
    ids = [check_batch_id(b) for b in kw["batch_ids"]]
    try:
        found = failures(kw["db"], ids, runs=not kw["submissions_only"])
    except MirrorError as e:
        _fail(str(e))
    fmt = kw["fmt"] or ("table" if sys.stdout.isatty() else "csv")
    if fmt == "csv":
        sys.stdout.write(as_csv(found))
    elif fmt == "jsonl":
        for failure in found:
            sys.stdout.write(orjson.dumps(failure.as_dict()).decode() + "\n")
    else:
        Console().print(failures_table(found))


@cli.command("resubmit")
@click.option("--db", required=True, type=click.Path(path_type=Path), help="The mirror.")
@click.option("--batch", "batch_id", required=True, help="The batch whose failures to run again.")
@click.option(
    "--settings",
    required=True,
    type=click.Path(path_type=Path),
    help="The batch's original per-run settings: the JSON list (inline or S3) it was given.",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="Write the input here."
)
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    type=click.Choice(FAILURE_REASONS),
    help="Only submissions that failed for this reason (repeat; default: every reason).",
)
@click.option(
    "--include-run-failures",
    is_flag=True,
    help="Also runs submitted that then failed or were cancelled (needs sync --run-status).",
)
@click.option(
    "--settings-uri",
    help="s3:// URI for the settings file (needed over 100 runs, the inline limit).",
)
def resubmit_command(**kw: Any) -> None:
    """Write a StartRunBatch input that runs again what failed in a batch.

    For `aws omics start-run-batch --cli-input-json file://OUT` or boto3's
    `start_run_batch(**json.load(open(OUT)))`. The same choice gives the same requestId, so
    submitting it twice cannot start two batches.
    """
    batch_id = check_batch_id(kw["batch_id"])
    output: Path = kw["output"]
    if output.is_dir() or not output.parent.is_dir():
        _fail(f"-o {output}: not a file in an existing directory")
    settings_file = output.with_name(output.stem + ".settings.json")
    if kw["settings"].resolve() in (output.resolve(), settings_file.resolve()):
        _fail(f"-o {output} would overwrite --settings {kw['settings']}; write elsewhere")
    settings = read_settings(kw["settings"])
    try:
        plan = resubmission(
            kw["db"],
            batch_id,
            settings,
            reasons=kw["reasons"],
            include_run_failures=kw["include_run_failures"],
            settings_uri=kw["settings_uri"],
        )
    except MirrorError as e:
        _fail(str(e))
    files: dict[Path, Any] = {output: plan.request}
    if plan.s3_settings is not None:
        files[settings_file] = plan.s3_settings
    for path, data in files.items():  # written whole or not at all
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        tmp.replace(path)
    click.echo(
        f"{output}: {len(plan.settings)} run(s) of batch {batch_id} to submit again, "
        f"requestId {plan.request['requestId']}",
        err=True,
    )
    if plan.s3_settings is not None:
        click.echo(
            f"upload {settings_file} to {kw['settings_uri']} first "
            f"(aws s3 cp {settings_file} {kw['settings_uri']})",
            err=True,
        )


@asynccontextmanager
async def _endpoint(kw: dict[str, Any], given: str | None) -> AsyncIterator[str | None]:
    """The endpoint to use: the embedded emulator's, the one given, or AWS's (None)."""
    if not kw["emulator"]:
        yield given
        return
    from .emulator import demo_service, run_emulator

    async with run_emulator(*demo_service()) as emulator:
        yield emulator.endpoint_url


def _finite(_: click.Context, __: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free."
)
@click.option(
    "--batches",
    type=click.IntRange(0, 1_000_000),
    default=20,
    show_default=True,
    help="Batches served.",
)
@click.option(
    "--runs-per-batch", type=click.IntRange(0, 100_000), help="Every batch this size (else mixed)."
)
@click.option("--submitting", type=click.IntRange(0), default=0, help="Batches still growing.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    callback=_finite,
    help="Quota, requests/s.",
)
@click.option(
    "--burst",
    type=click.FloatRange(min=1),
    callback=_finite,
    help="Quota burst (default: the rate; needs --rate).",
)
@click.option(
    "--neighbour-rps",
    type=click.FloatRange(0, 1000),
    callback=_finite,
    default=0.0,
    help="Another tool's steady calls/s on the same quota, as on a shared account.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    callback=_finite,
    default=0.0,
    show_default=True,
    help="Time to answer each request (20% jitter).",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0, 1),
    callback=_finite,
    default=0.0,
    show_default=True,
    help="Share of requests failed, evenly as 408, 500 and dropped connections.",
)
@click.option(
    "--timeout-rate", type=click.FloatRange(0, 1), callback=_finite, help="Share answered 408."
)
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), callback=_finite, help="Share answered 500."
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    callback=_finite,
    help="Share of connections dropped.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Same seed, same data and tokens."
)
def emulator(**kw: Any) -> None:
    """Serve a local HealthOmics run-batch emulator until Ctrl-C."""
    from .emulator import Behaviour, Dataset, serve_forever

    if kw["burst"] is not None and kw["rate"] is None:
        raise click.UsageError("--burst needs --rate (a burst of no quota means nothing)")

    dataset = Dataset(
        seed=kw["seed"],
        batches=kw["batches"],
        runs_per_batch=kw["runs_per_batch"],
        submitting=kw["submitting"],
    )
    third = kw["fault_rate"] / 3

    def share(name: str) -> float:
        return float(third if kw[name] is None else kw[name])

    try:
        behaviour = Behaviour(
            rate=kw["rate"],
            burst=kw["burst"],
            latency_ms=kw["latency_ms"],
            timeout_rate=share("timeout_rate"),
            error_rate=share("error_rate"),
            drop_rate=share("drop_rate"),
            seed=kw["seed"],
            neighbour_rps=kw["neighbour_rps"],
        )
    except ValueError as e:  # its own checks, such as fault shares adding up to over 1
        raise click.UsageError(str(e)) from None

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


def _wants_json(args: list[str]) -> bool:
    """Whether the last --log-format given is json (as click takes the last one)."""
    chosen = None
    for i, a in enumerate(args):
        if a.startswith("--log-format="):
            chosen = a.partition("=")[2]
        elif a == "--log-format":
            chosen = next(iter(args[i + 1 : i + 2]), None)
    return chosen == "json"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: usage errors are one line on stderr and exit 2, never a traceback."""
    if not (sys.argv[1:] if argv is None else argv):
        with click.Context(cli, info_name="omics-batch-runs") as ctx:
            click.echo(cli.get_help(ctx), err=True)
        sys.exit(EXIT_USAGE)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="omics-batch-runs", standalone_mode=False)
    except (click.UsageError, InvalidInput) as e:
        message = e.format_message() if isinstance(e, click.UsageError) else str(e)
        if _wants_json(args):
            click.echo(json_line("error", message), err=True)  # every line JSON, as asked
        else:
            click.echo(f"omics-batch-runs: error: {message}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    sys.exit(EXIT_OK)
