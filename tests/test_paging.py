"""The core generator, driven through the real aiobotocore client against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omics_batch_runs import (
    BatchError,
    BatchesFailed,
    FetchOptions,
    FetchStats,
    InvalidInput,
    iter_pages,
    iter_runs,
)
from omics_batch_runs.client import open_client
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


async def test_on_error_receives_failures_and_nothing_is_raised(emulator: Emulator) -> None:
    emulator.forbidden.add(emulator.batch_ids[0])
    seen: list[BatchError] = []
    runs = await collect(emulator.batch_ids, emulator, on_error=seen.append)
    assert [(e.batch_id, e.code) for e in seen] == [
        (emulator.batch_ids[0], "AccessDeniedException")
    ]
    assert by_key(runs) == by_key(expected_runs(emulator, emulator.batch_ids[1:]))


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
    for bad in (["1", "abc"], "123", [emulator.batch_ids[0], "1" * 19]):
        with pytest.raises(InvalidInput):
            await collect(bad, emulator)
    with pytest.raises(InvalidInput):
        await collect(emulator.batch_ids, emulator, page_size=101)
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
