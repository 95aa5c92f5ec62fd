"""The core generator, driven through the real aiobotocore client against the emulator."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from botocore.exceptions import NoCredentialsError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omics_batch_runs import (
    AdaptiveRate,
    BatchError,
    BatchesFailed,
    FetchOptions,
    FetchStats,
    InvalidInput,
    UnsupportedEventLoop,
    iter_pages,
    iter_runs,
    open_runs,
)
from omics_batch_runs.client import _bundled_model_lacks_batches, open_client
from omics_batch_runs.emulator import Behaviour, Dataset, Emulator, Fault, run_emulator

from .conftest import by_key, reference_runs

FAST = {"backoff": 0.001}


def client_tasks() -> set[asyncio.Task[Any]]:
    """Tasks left besides this test's own and the in-process emulator's connection handlers."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and "RequestHandler" not in repr(t.get_coro())
    }


def expected_runs(emulator: Emulator, batch_ids: list[str] | None = None) -> list[dict[str, Any]]:
    ids = batch_ids if batch_ids is not None else emulator.batch_ids
    data = emulator.dataset
    return [{"batchId": b, **r} for b in ids for r in data.runs(data.batch(b))]  # type: ignore[arg-type]


async def collect(batch_ids: Any, emulator: Emulator, **kwargs: Any) -> list[dict[str, Any]]:
    return [r async for r in iter_runs(batch_ids, endpoint_url=emulator.endpoint_url, **kwargs)]


async def test_every_run_once_and_equal_to_boto3s_paginator(emulator: Emulator) -> None:
    runs = await collect(emulator.batch_ids, emulator, concurrency=4, page_size=37)
    reference = await reference_runs(emulator, emulator.batch_ids)
    assert by_key(runs) == by_key(reference)
    assert len(runs) == sum(b.total_runs for b in emulator.dataset.batches)


async def test_each_batch_arrives_in_page_order(emulator: Emulator) -> None:
    runs = await collect(emulator.batch_ids, emulator, concurrency=8, page_size=10)
    for batch_id in emulator.batch_ids:
        mine = [r for r in runs if r["batchId"] == batch_id]
        assert mine == [r for r in expected_runs(emulator) if r["batchId"] == batch_id]


async def test_under_random_faults_every_run_arrives_exactly_once() -> None:
    faults = Behaviour(timeout_rate=0.05, error_rate=0.03, drop_rate=0.02, rate=150, burst=5)
    async with run_emulator(Dataset(seed=9, batches=25), faults) as emulator:
        stats = FetchStats()
        runs = await collect(emulator.batch_ids, emulator, stats=stats, **FAST)
        faults.timeout_rate = faults.error_rate = faults.drop_rate = 0.0
        faults.set_quota(None)
        reference = await reference_runs(emulator, emulator.batch_ids)
        assert by_key(runs) == by_key(reference)
        assert stats.retries > 0 and stats.timeouts > 0 and stats.server_errors > 0
        assert emulator.counters.faults["drop"] > 0
        assert emulator.counters.throttled > 0 and stats.throttles == emulator.counters.throttled


async def test_every_retry_is_counted_once(emulator: Emulator) -> None:
    script: list[Fault | None] = ["throttle", "timeout", "error", "throttle", "timeout"]
    emulator.script_faults(script)
    stats = FetchStats()
    await collect(emulator.batch_ids[:1], emulator, stats=stats, **FAST)
    assert stats.retries == len(script)
    assert (stats.throttles, stats.timeouts, stats.server_errors) == (2, 2, 1)
    assert stats.retries_by_error == {
        "ThrottlingException": 2,
        "RequestTimeoutException": 2,
        "InternalServerException": 1,
    }
    assert stats.requests == emulator.counters.requests["ListRunsInBatch"]


SCHEDULES = st.lists(
    st.sampled_from(["throttle", "timeout", "error", "drop", None]), min_size=1, max_size=30
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=SCHEDULES, concurrency=st.integers(1, 6), page_size=st.integers(20, 100))
def test_any_fault_schedule_yields_every_run_exactly_once_unchanged(
    schedule: list[Fault | None], concurrency: int, page_size: int
) -> None:
    async def scenario() -> None:
        async with run_emulator(Dataset(seed=11, sizes=[0, 60, 7, 130, 1])) as emulator:
            emulator.script_faults(schedule)
            runs = await collect(
                emulator.batch_ids,
                emulator,
                concurrency=concurrency,
                page_size=page_size,
                max_attempts=40,
                **FAST,
            )
            assert by_key(runs) == by_key(expected_runs(emulator))

    asyncio.run(scenario())


async def test_in_flight_requests_never_exceed_concurrency() -> None:
    async with run_emulator(Dataset(seed=2, batches=30), Behaviour(latency_ms=15)) as emulator:
        stats = FetchStats()
        await collect(emulator.batch_ids, emulator, concurrency=5, stats=stats)
        assert emulator.counters.max_in_flight <= 5
        assert stats.max_in_flight == 5  # the bound is reached, not merely never tested


async def test_aclose_stops_all_work_promptly() -> None:
    async with run_emulator(Dataset(seed=2, batches=40), Behaviour(latency_ms=20)) as emulator:
        stats = FetchStats()
        runs = iter_runs(
            emulator.batch_ids, endpoint_url=emulator.endpoint_url, concurrency=8, stats=stats
        )
        for _ in range(5):
            await runs.__anext__()
        await runs.aclose()
        sent = stats.requests
        await asyncio.sleep(0.3)
        assert stats.requests == sent
        # The server may still be reading a request sent before aclose; never one more.
        assert 0 < sum(emulator.counters.requests.values()) <= sent
        assert emulator.counters.in_flight == 0
        assert client_tasks() == set()


async def test_breaking_out_inside_aclosing_stops_the_workers(emulator: Emulator) -> None:
    async with aclosing(iter_runs(emulator.batch_ids, endpoint_url=emulator.endpoint_url)) as runs:
        async for _ in runs:
            break
    assert client_tasks() == set()


async def test_cancelling_the_consumer_stops_the_workers() -> None:
    async with run_emulator(Dataset(seed=2, batches=40), Behaviour(latency_ms=30)) as emulator:
        task = asyncio.create_task(collect(emulator.batch_ids, emulator))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client_tasks() == set()


async def test_a_slow_consumer_slows_the_fetching() -> None:
    async with run_emulator(Dataset(seed=2, runs_per_batch=100, batches=200)) as emulator:
        stats = FetchStats()
        pages = iter_pages(
            emulator.batch_ids,
            FetchOptions(concurrency=4),
            endpoint_url=emulator.endpoint_url,
            stats=stats,
        )
        async with aclosing(pages):
            for _ in range(10):
                await pages.__anext__()
                await asyncio.sleep(0.02)
            # What was fetched is what was read, plus one channel's buffer and what is
            # in the workers' hands: never the 200 pages there are.
            assert stats.pages <= 10 + 4 + 2 * 4


async def test_missing_batches_do_not_stop_the_others(emulator: Emulator) -> None:
    ids = ["999", *emulator.batch_ids, "998"]
    runs: list[dict[str, Any]] = []
    with pytest.raises(BatchesFailed) as raised:
        async for run in iter_runs(ids, endpoint_url=emulator.endpoint_url):
            runs.append(run)
    assert by_key(runs) == by_key(expected_runs(emulator))
    assert sorted(e.batch_id for e in raised.value.errors) == ["998", "999"]
    assert {e.code for e in raised.value.errors} == {"ResourceNotFoundException"}


async def test_no_credentials_is_raised_once_not_as_a_failure_of_every_batch(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    seen: list[BatchError] = []
    with pytest.raises(NoCredentialsError):
        await collect(emulator.batch_ids * 20, emulator, on_error=seen.append)
    assert seen == [] and emulator.counters.requests == {}
    assert client_tasks() == set()


async def test_on_error_receives_failures_and_nothing_is_raised(emulator: Emulator) -> None:
    emulator.forbidden.add(emulator.batch_ids[0])
    seen: list[BatchError] = []
    runs = await collect(emulator.batch_ids, emulator, on_error=seen.append)
    assert [(e.batch_id, e.code) for e in seen] == [
        (emulator.batch_ids[0], "AccessDeniedException")
    ]
    assert by_key(runs) == by_key(expected_runs(emulator, emulator.batch_ids[1:]))
    # Kept without their frames: 200,000 failed ids once held 4 GB of tracebacks.
    assert seen[0].error.__traceback__ is None and seen[0].error.__context__ is None


async def test_fail_fast_stops_at_the_first_failure(emulator: Emulator) -> None:
    with pytest.raises(BatchError) as raised:
        await collect(["999", *emulator.batch_ids], emulator, fail_fast=True, concurrency=1)
    assert raised.value.batch_id == "999"
    assert client_tasks() == set()


async def test_retries_exhausted_is_a_batch_failure(emulator: Emulator) -> None:
    emulator.script_faults(["throttle"] * 3)
    seen: list[BatchError] = []
    await collect(emulator.batch_ids[:1], emulator, max_attempts=3, on_error=seen.append, **FAST)
    assert [e.code for e in seen] == ["ThrottlingException"]


async def test_bad_input_is_refused_before_any_request(emulator: Emulator) -> None:
    for bad in (["1", "abc"], "123", [emulator.batch_ids[0], "1" * 19], None, 123):
        with pytest.raises(InvalidInput):
            await collect(bad, emulator)
    with pytest.raises(InvalidInput):
        await collect(emulator.batch_ids, emulator, page_size=101)
    with pytest.raises(InvalidInput, match="cap"):  # a cap that would be silently ignored
        await collect(emulator.batch_ids, emulator, rate=AdaptiveRate(), max_rps=3)
    with pytest.raises(InvalidInput, match="AdaptiveRate"):
        await collect(emulator.batch_ids, emulator, rate=5)

    async def later(error: BatchError) -> None: ...

    for bad in (3, later):  # an async one would be called and never awaited
        with pytest.raises(InvalidInput, match="plain function"):
            await collect(emulator.batch_ids, emulator, on_error=bad)
    with pytest.raises(InvalidInput, match="not both"):
        await collect(emulator.batch_ids, emulator, on_error=print, fail_fast=True)
    ids, url = emulator.batch_ids, emulator.endpoint_url
    for endpoint in ("garbage", f"{url}/x", "ftp://127.0.0.1:1"):
        with pytest.raises(InvalidInput, match="is not a URL"):
            await iter_runs(ids, endpoint_url=endpoint).__anext__()
    with pytest.raises(InvalidInput, match="aiobotocore omics client"):
        await iter_runs(ids, client=object()).__anext__()
    assert emulator.counters.requests == {}


async def test_duplicates_are_fetched_once(emulator: Emulator) -> None:
    small = min(
        (b for b in emulator.dataset.batches if b.total_runs), key=lambda b: b.total_runs
    ).id
    runs = await collect([small, int(small), small], emulator)
    assert by_key(runs) == by_key(expected_runs(emulator, [small]))
    assert emulator.counters.requests["ListRunsInBatch"] == 1


async def test_async_and_lazy_iterables_of_ids(emulator: Emulator) -> None:
    async def ids_async() -> AsyncIterator[str]:
        for batch_id in emulator.batch_ids:
            await asyncio.sleep(0)
            yield batch_id

    def ids_lazy() -> Iterator[str]:
        yield from emulator.batch_ids

    expected = by_key(expected_runs(emulator))
    assert by_key(await collect(ids_async(), emulator)) == expected
    assert by_key(await collect(ids_lazy(), emulator)) == expected


async def test_filters_match_boto3(emulator: Emulator) -> None:
    big = max(emulator.dataset.batches, key=lambda b: b.total_runs).id
    failed = await collect([big], emulator, submission_status="FAILED", page_size=25)
    assert failed == [
        r for r in expected_runs(emulator, [big]) if r["submissionStatus"] == "FAILED"
    ]
    one = await collect([big], emulator, run_setting_id="sample-000003")
    assert [r["runSettingId"] for r in one] == ["sample-000003"]


async def test_resume_from_a_token(emulator: Emulator) -> None:
    big = max(emulator.dataset.batches, key=lambda b: b.total_runs).id
    options = FetchOptions(page_size=50)
    pages = iter_pages([big], options, endpoint_url=emulator.endpoint_url)
    async with aclosing(pages):
        first = await pages.__anext__()
    assert first.next_token
    rest = [
        r
        async for p in iter_pages(
            [big], options, endpoint_url=emulator.endpoint_url, start_tokens={big: first.next_token}
        )
        for r in p.runs
    ]
    assert first.runs + rest == expected_runs(emulator, [big])


async def test_a_given_client_is_used_and_left_open(emulator: Emulator) -> None:
    from aiobotocore.session import get_session

    from omics_batch_runs import add_missing_operations
    from omics_batch_runs.client import client_config

    session = get_session()
    add_missing_operations(session)  # what a user does with their own client on old botocore
    config = client_config(pool=4, endpoint_url=emulator.endpoint_url)
    async with session.create_client(
        "omics", endpoint_url=emulator.endpoint_url, config=config
    ) as client:
        first = [r async for r in iter_runs(emulator.batch_ids[:3], client=client)]
        again = [r async for r in iter_runs(emulator.batch_ids[:3], client=client)]
    expected = by_key(expected_runs(emulator, emulator.batch_ids[:3]))
    assert by_key(first) == by_key(again) == expected


async def test_a_bug_is_raised_not_reported_as_a_batch_failure(emulator: Emulator) -> None:
    def bug(**_: Any) -> None:
        raise KeyError("bug")

    async with open_client(endpoint_url=emulator.endpoint_url) as omics:
        omics.meta.events.register("after-call.omics.ListRunsInBatch", bug)
        with pytest.raises(KeyError):
            await collect(emulator.batch_ids, emulator, client=omics)
    assert client_tasks() == set()


# Stopping early however the caller stops: the caller's task is left as it was, no request
# is sent after the loop has ended, and no task is left behind.


def caller_intact() -> None:
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0


async def sent_nothing_after(emulator: Emulator, stats: FetchStats) -> None:
    """What the client had sent when the loop ended is all the emulator ever receives."""
    sent = stats.requests
    await asyncio.sleep(0.3)  # unrelated awaits in the caller, and time for a stray request
    for _ in range(100):  # the fetch's own tasks end soon after, even on a loaded machine
        if not client_tasks():
            break
        await asyncio.sleep(0.05)
    caller_intact()
    assert stats.requests == sent
    assert sum(emulator.counters.requests.values()) <= sent
    assert client_tasks() == set()


@pytest.fixture
async def slow() -> AsyncIterator[Emulator]:
    async with run_emulator(Dataset(seed=2, batches=40), Behaviour(latency_ms=20)) as emulator:
        yield emulator


async def test_a_plain_break_without_aclosing(slow: Emulator) -> None:
    stats = FetchStats()
    async for _ in iter_runs(slow.batch_ids, endpoint_url=slow.endpoint_url, stats=stats):
        break
    await sent_nothing_after(slow, stats)


async def test_a_plain_break_stops_sending_on_the_spot() -> None:
    """Workers ready to send at the moment of the `break` send nothing: the generator is
    stopped as it becomes unreachable, before the event loop runs anything else."""
    async with run_emulator(Dataset(seed=2, runs_per_batch=500, batches=40)) as emulator:
        stats = FetchStats()
        seen = 0
        async for _ in iter_runs(
            emulator.batch_ids, endpoint_url=emulator.endpoint_url, stats=stats, page_size=1
        ):
            seen += 1
            if seen == 200:
                break
        await sent_nothing_after(emulator, stats)


async def test_a_timeout_around_a_loop_whose_body_awaits(slow: Emulator) -> None:
    stats = FetchStats()
    with anyio.move_on_after(0.2) as scope:
        async for _ in iter_runs(slow.batch_ids, endpoint_url=slow.endpoint_url, stats=stats):
            await anyio.sleep(0.01)
    assert scope.cancelled_caught
    await sent_nothing_after(slow, stats)


async def test_a_cancel_scope_cancelled_inside_the_loop(slow: Emulator) -> None:
    stats = FetchStats()
    with anyio.CancelScope() as scope:
        async for _ in iter_runs(slow.batch_ids, endpoint_url=slow.endpoint_url, stats=stats):
            if stats.pages > 3:
                scope.cancel()
            await anyio.lowlevel.checkpoint()
    await sent_nothing_after(slow, stats)


async def test_a_loop_cancelled_from_outside(slow: Emulator) -> None:
    stats = FetchStats()

    async def consume() -> None:
        async for _ in iter_runs(slow.batch_ids, endpoint_url=slow.endpoint_url, stats=stats):
            await asyncio.sleep(0.01)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sent_nothing_after(slow, stats)


async def test_finalised_by_the_garbage_collector_from_another_task(slow: Emulator) -> None:
    stats = FetchStats()

    async def start_and_abandon() -> None:
        runs = iter_runs(slow.batch_ids, endpoint_url=slow.endpoint_url, stats=stats)
        await runs.__anext__()
        cycle: list[Any] = [runs]
        cycle.append(cycle)  # only the cyclic collector can find it now

    await asyncio.create_task(start_and_abandon())
    gc.collect()
    await sent_nothing_after(slow, stats)


async def test_the_structured_form_stops_when_its_block_is_left(slow: Emulator) -> None:
    async with open_runs(slow.batch_ids, endpoint_url=slow.endpoint_url) as runs:
        async for _ in runs:
            break
        # Still inside: it is the block, not the loop, that stops the fetch.
        assert client_tasks() != set()
    await sent_nothing_after(slow, runs.stats)


async def test_an_exception_in_on_error_propagates_as_itself_and_stops(slow: Emulator) -> None:
    class Stop(Exception):
        pass

    def on_error(error: BatchError) -> None:
        raise Stop(error.batch_id)

    stats = FetchStats()
    with pytest.raises(Stop, match=r"^999$"):
        async for _ in iter_runs(
            ["999", *slow.batch_ids], endpoint_url=slow.endpoint_url, stats=stats, on_error=on_error
        ):
            pass
    await sent_nothing_after(slow, stats)


USER_SCRIPT = """
import asyncio, sys
from contextlib import aclosing
import anyio
from omics_batch_runs import FetchStats, UnsupportedEventLoop, iter_runs, open_runs
from omics_batch_runs.emulator import Behaviour, Dataset, run_emulator_in_thread

async def never_started(url, ids):
    runs = iter_runs(ids, endpoint_url=url)
    del runs
    await iter_runs(ids, endpoint_url=url).aclose()
    async with aclosing(iter_runs(ids, endpoint_url=url)):
        pass
    open_runs(ids, endpoint_url=url)

async def under_trio(url, ids):
    try:
        async for _ in iter_runs(ids, endpoint_url=url):
            pass
    except UnsupportedEventLoop:
        pass

async def main(emulator):
    url, ids = emulator.endpoint_url, emulator.batch_ids
    await never_started(url, ids)
    async for _ in iter_runs(ids, endpoint_url=url):
        break
    await anyio.sleep(0.2)
    with anyio.move_on_after(0.2):
        async for _ in iter_runs(ids, endpoint_url=url):
            await anyio.sleep(0.01)
    await anyio.sleep(0.2)
    print("ok")

with run_emulator_in_thread(Dataset(seed=2, batches=40), Behaviour(latency_ms=20)) as emulator:
    anyio.run(main, emulator)
    if "trio" in sys.argv:
        anyio.run(under_trio, emulator.endpoint_url, emulator.batch_ids, backend="trio")
"""


def test_no_warning_under_python_dev_mode(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    trio = ["trio"] if importlib.util.find_spec("trio") else []
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script), *trio],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_under_trio_it_is_refused_at_once() -> None:
    pytest.importorskip("trio")

    async def main() -> None:
        async for _ in iter_runs(["1"], endpoint_url="http://127.0.0.1:9"):
            pass

    started = time.monotonic()
    with pytest.raises(UnsupportedEventLoop, match="needs asyncio"):
        anyio.run(main, backend="trio")
    assert time.monotonic() - started < 2


async def test_a_request_slower_than_the_rate_look_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer comes after the rate controller has forgotten the last success."""
    monkeypatch.setattr("omics_batch_runs.rate._LOOKBACK", 0.01)
    async with run_emulator(Dataset(seed=3, sizes=[250, 40]), Behaviour(latency_ms=50)) as emu:
        runs = await collect(emu.batch_ids, emu, concurrency=1)
        assert by_key(runs) == by_key(expected_runs(emu))


def handler_ids(client: Any) -> set[str]:
    return set(client.meta.events._emitter._unique_id_handlers)


async def test_a_borrowed_client_is_left_as_it_came(emulator: Emulator) -> None:
    async with open_client(endpoint_url=emulator.endpoint_url) as omics:
        before = handler_ids(omics)
        await collect(emulator.batch_ids[:2], emulator, client=omics)
        assert handler_ids(omics) == before
        await collect(["999"], emulator, client=omics, on_error=lambda _: None)
        assert handler_ids(omics) == before


@pytest.mark.parametrize(
    ("retries", "message"),
    [
        (None, "total_max_attempts': 1"),  # botocore's default: legacy retries on
        pytest.param(
            {"total_max_attempts": 1},
            "add_missing_operations",
            marks=pytest.mark.skipif(
                not _bundled_model_lacks_batches(),
                reason="this botocore has the run-batch operations",
            ),
            id="without-the-operations",
        ),
    ],
)
async def test_a_borrowed_client_that_cannot_serve_is_refused_saying_why(
    emulator: Emulator, retries: dict[str, int] | None, message: str
) -> None:
    from aiobotocore.session import get_session
    from botocore.config import Config

    config = Config(inject_host_prefix=False, retries=retries)
    async with get_session().create_client(
        "omics", endpoint_url=emulator.endpoint_url, config=config
    ) as omics:
        with pytest.raises(InvalidInput, match=message):
            await collect(emulator.batch_ids, emulator, client=omics)
    assert emulator.counters.requests == {}
