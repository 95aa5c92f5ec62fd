"""The emulator as AWS's own client (boto3/botocore) sees it."""

from __future__ import annotations

import contextlib
import math
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from omics_batch_runs.emulator import (
    Behaviour,
    Dataset,
    Emulator,
    Fault,
    run_emulator,
    run_emulator_in_thread,
)

from ..conftest import boto3_client, in_thread, paginate_with_boto3


async def test_boto3_paginator_gets_exactly_the_runs_held(emulator: Emulator) -> None:
    for batch in emulator.dataset.batches:
        runs = await in_thread(
            paginate_with_boto3,
            emulator.endpoint_url,
            batch.id,
            PaginationConfig={"PageSize": 40},
        )
        expected = [{"batchId": batch.id, **r} for r in emulator.dataset.runs(batch)]
        assert runs == expected


async def test_list_batch_pages_and_filters(emulator: Emulator) -> None:
    client = boto3_client(emulator.endpoint_url)
    paginator = client.get_paginator("list_batch")
    pages = await in_thread(lambda: list(paginator.paginate(PaginationConfig={"PageSize": 5})))
    items = [i for p in pages for i in p["items"]]
    assert [i["id"] for i in items] == emulator.batch_ids
    assert len(pages) == 3
    failed = await in_thread(lambda: client.list_batch(status="FAILED")["items"])
    assert failed and all(i["status"] == "FAILED" and i["totalRuns"] == 0 for i in failed)


async def test_get_batch_is_consistent_with_the_listing(emulator: Emulator) -> None:
    batch = max(emulator.dataset.batches, key=lambda b: b.total_runs)
    got = await in_thread(boto3_client(emulator.endpoint_url).get_batch, batchId=batch.id)
    runs = await in_thread(paginate_with_boto3, emulator.endpoint_url, batch.id)
    summary = got["submissionSummary"]
    assert got["totalRuns"] == len(runs)
    failed = sum(r["submissionStatus"] == "FAILED" for r in runs)
    assert summary["failedStartSubmissionCount"] == failed
    assert summary["successfulStartSubmissionCount"] == len(runs) - failed
    assert summary["successfulCancelSubmissionCount"] == sum(
        r["submissionStatus"] == "CANCEL_SUCCESS" for r in runs
    )


async def test_filters_select_the_right_runs(emulator: Emulator) -> None:
    batch = max(emulator.dataset.batches, key=lambda b: b.total_runs)
    everything = await in_thread(paginate_with_boto3, emulator.endpoint_url, batch.id)
    failed = await in_thread(
        paginate_with_boto3, emulator.endpoint_url, batch.id, submissionStatus="FAILED"
    )
    assert failed == [r for r in everything if r["submissionStatus"] == "FAILED"]
    target = everything[7]
    by_setting = await in_thread(
        paginate_with_boto3, emulator.endpoint_url, batch.id, runSettingId=target["runSettingId"]
    )
    assert by_setting == [target]
    with_id = next(r for r in everything if "runId" in r)
    by_id = await in_thread(
        paginate_with_boto3, emulator.endpoint_url, batch.id, runId=with_id["runId"]
    )
    assert by_id == [with_id]


@pytest.mark.parametrize(
    ("params", "code", "status"),
    [
        ({"batchId": "123"}, "ResourceNotFoundException", 404),
        ({"batchId": "abc"}, "ValidationException", 400),
        ({"batchId": "1" * 19}, "ValidationException", 400),
        ({"maxItems": 101}, "ValidationException", 400),
        ({"runId": "1", "runSettingId": "x"}, "ValidationException", 400),
        ({"submissionStatus": "DONE"}, "ValidationException", 400),
        ({"startingToken": "forged"}, "ValidationException", 400),
    ],
)
async def test_modeled_errors(
    emulator: Emulator, params: dict[str, object], code: str, status: int
) -> None:
    client = boto3_client(emulator.endpoint_url)
    call = {"batchId": emulator.batch_ids[1], **params}
    with pytest.raises(ClientError) as raised:
        await in_thread(client.list_runs_in_batch, **call)
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert raised.value.response["Error"]["Message"]
    assert type(raised.value).__name__ == code  # botocore's modeled exception class


async def test_a_token_from_another_batch_or_filter_is_refused(emulator: Emulator) -> None:
    client = boto3_client(emulator.endpoint_url)
    big = [b.id for b in emulator.dataset.batches if b.total_runs > 10]
    token = (await in_thread(client.list_runs_in_batch, batchId=big[0], maxItems=2))["nextToken"]
    for other in ({"batchId": big[1]}, {"batchId": big[0], "submissionStatus": "SUCCESS"}):
        with pytest.raises(client.exceptions.ValidationException):
            await in_thread(client.list_runs_in_batch, startingToken=token, **other)


async def test_unsigned_requests_are_denied(emulator: Emulator) -> None:
    url = f"{emulator.endpoint_url}/runBatch/{emulator.batch_ids[0]}/run"
    with pytest.raises(urllib.error.HTTPError) as raised:
        await in_thread(urllib.request.urlopen, url)
    assert raised.value.code == 403
    assert raised.value.headers["x-amzn-ErrorType"].startswith("AccessDeniedException")


async def test_forbidden_batches_get_access_denied(emulator: Emulator) -> None:
    emulator.forbidden.add(emulator.batch_ids[0])
    with pytest.raises(ClientError) as raised:
        await in_thread(
            boto3_client(emulator.endpoint_url).list_runs_in_batch, batchId=emulator.batch_ids[0]
        )
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"


async def test_quota_is_seen_by_botocore_as_throttling() -> None:
    async with run_emulator(Dataset(batches=1), Behaviour(rate=0.01, burst=2)) as emulator:
        client = boto3_client(emulator.endpoint_url)
        call = {"batchId": emulator.batch_ids[0]}
        await in_thread(client.list_runs_in_batch, **call)
        await in_thread(client.list_runs_in_batch, **call)
        with pytest.raises(client.exceptions.ThrottlingException):
            await in_thread(client.list_runs_in_batch, **call)
        assert emulator.counters.throttled == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("timeout", "RequestTimeoutException"),
        ("error", "InternalServerException"),
        ("throttle", "ThrottlingException"),
    ],
)
async def test_scripted_faults_are_modeled_errors(
    emulator: Emulator, fault: str, error: str
) -> None:
    emulator.behaviour.script([fault])  # type: ignore[list-item]
    client = boto3_client(emulator.endpoint_url)
    with pytest.raises(ClientError) as raised:
        await in_thread(client.list_runs_in_batch, batchId=emulator.batch_ids[0])
    assert type(raised.value).__name__ == error


async def test_a_dropped_connection_is_a_connection_error(emulator: Emulator) -> None:
    emulator.script_faults(["drop"])
    with pytest.raises(ConnectionClosedError):
        await in_thread(
            boto3_client(emulator.endpoint_url).list_runs_in_batch, batchId=emulator.batch_ids[0]
        )


@pytest.mark.parametrize("fault", [None, "throttle", "drop"])
async def test_every_answer_comes_after_the_latency(fault: Fault | None) -> None:
    async with run_emulator(Dataset(batches=1), Behaviour(latency_ms=200, jitter=0)) as emulator:
        emulator.script_faults([fault])
        client = boto3_client(emulator.endpoint_url)
        started = time.monotonic()
        with contextlib.suppress(ClientError, ConnectionClosedError):
            await in_thread(client.list_runs_in_batch, batchId=emulator.batch_ids[0])
        assert time.monotonic() - started >= 0.2


async def test_submitting_batch_lists_what_has_been_submitted() -> None:
    data = Dataset(sizes=[50_000], submitting=1, submit_rate=200.0)
    async with run_emulator(data) as emulator:
        first = await in_thread(paginate_with_boto3, emulator.endpoint_url, emulator.batch_ids[0])
        got = await in_thread(
            boto3_client(emulator.endpoint_url).get_batch, batchId=emulator.batch_ids[0]
        )
        assert got["status"] == "SUBMITTING"
        assert 0 < len(first) < 50_000
        assert got["submissionSummary"]["pendingStartSubmissionCount"] > 0


def test_batches_move_through_their_lifecycle_as_boto3_sees_it() -> None:
    data = Dataset(seed=40, sizes=[300, 200])
    with run_emulator_in_thread(data) as emulator:
        client = boto3_client(emulator.endpoint_url)
        url = emulator.endpoint_url

        def post(path: str) -> Any:
            request = urllib.request.Request(f"{url}/_emulator/{path}", method="POST")
            with urllib.request.urlopen(request) as answer:
                return orjson.loads(answer.read())

        def statuses(batch_id: str) -> set[str]:
            pages = client.get_paginator("list_runs_in_batch").paginate(batchId=batch_id)
            return {r["submissionStatus"] for p in pages for r in p["runs"]}

        growing = post("batches?sizes=500&submitting=1")["ids"][0]
        assert client.get_batch(batchId=growing)["status"] == "SUBMITTING"
        time.sleep(0.5)  # 50 runs a second appear
        first = sum(len(p["runs"]) for p in client.get_paginator("list_runs_in_batch").paginate(
            batchId=growing))  # fmt: skip
        assert 0 < first < 500
        post(f"batches/{growing}/cancel")
        assert client.get_batch(batchId=growing)["status"] == "CANCELLED"
        assert "SUCCESS" not in statuses(growing) and "CANCEL_SUCCESS" in statuses(growing)
        settled = emulator.batch_ids[0]
        assert client.get_batch(batchId=settled)["status"] in ("PROCESSED", "CANCELLED")
        post(f"batches/{settled}/delete-runs")
        assert client.get_batch(batchId=settled)["status"] == "RUNS_DELETED"
        assert statuses(settled) <= {"DELETE_SUCCESS", "DELETE_FAILED", "FAILED", "CANCEL_FAILED"}
        post(f"batches/{settled}/delete")
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_batch(batchId=settled)
        listed = [b["id"] for b in client.list_batch()["items"]]
        assert settled not in listed and growing in listed


def _put(url: str, method: str = "PUT") -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request) as response:
        return orjson.loads(response.read())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "s3"),
        ("PUT", "s3?uri=notanuri"),
        ("PUT", "s3?uri=s3://bucket/key&uri=s3://bucket/other"),
        ("POST", "batches"),
        ("POST", "batches?size=5"),
        ("POST", "batches?sizes=1&sizes=2"),
        ("POST", "batches?sizes=1&submitting=maybe"),
        ("POST", "batches?sizes=x"),
        ("POST", "batches/{id}/cancel?now=1"),
        ("POST", "rotate-tokens?all=1"),
        ("GET", "counters?reset=yes"),
        ("GET", "counters?rest=1"),
    ],
)
def test_control_calls_with_a_missing_unknown_or_repeated_parameter_are_400(
    method: str, path: str
) -> None:
    with run_emulator_in_thread(Dataset(batches=1)) as emulator:
        url = f"{emulator.endpoint_url}/_emulator/{path.format(id=emulator.batch_ids[0])}"
        with pytest.raises(urllib.error.HTTPError, match="400"):
            _put(url, method)
        assert len(emulator.dataset.batches) == 1 and emulator.app.objects == {}


def test_quota_changes_and_a_neighbour_through_control_endpoints() -> None:
    dataset = Dataset(batches=1, runs_per_batch=100)
    with run_emulator_in_thread(dataset, Behaviour(rate=1000, burst=1000)) as emulator:
        url, client = emulator.endpoint_url, boto3_client(emulator.endpoint_url)
        batch_id = emulator.batch_ids[0]
        _put(f"{url}/_emulator/quota?rate=0.001&burst=1")  # down to what the bucket holds
        client.list_runs_in_batch(batchId=batch_id)
        with pytest.raises(ClientError, match="Throttling"):
            client.list_runs_in_batch(batchId=batch_id)
        assert _put(f"{url}/_emulator/quota?rate=none") == {"rate": None, "burst": None}
        client.list_runs_in_batch(batchId=batch_id)
        # A neighbour calling 50 times a second on a 20 req/s quota: most of its calls
        # are throttled, and they are its own, not the emulator's client's.
        _put(f"{url}/_emulator/quota?rate=20&burst=1")
        emulator.counters.reset()
        assert _put(f"{url}/_emulator/neighbour?rps=50") == {"rps": 50.0}
        time.sleep(1.0)
        _put(f"{url}/_emulator/neighbour?rps=0")
        c = emulator.counters
        assert 30 <= c.neighbour_requests <= 55  # late wake-ups do not catch up
        assert 0.4 * c.neighbour_requests <= c.neighbour_throttled <= 0.8 * c.neighbour_requests
        assert c.requests == {} and c.throttled == 0
        bad_ones = ("quota?rate=-1", "quota?rate=1&burst=0", "quota?rate=x", "quota?burst=5")
        bad_ones += ("quota?rate=nan", "quota?rate=10&burst=inf", "neighbour?rps=-2")
        bad_ones += ("neighbour", "neighbour?rps=inf", "quota?rate=none&burst=5")
        bad_ones += ("quota?rate=5&rate=20", "quota?rate=5&brust=5", "neighbour?rps=1&rate=2")
        for bad in bad_ones:
            with pytest.raises(urllib.error.HTTPError, match="400"):
                _put(f"{url}/_emulator/{bad}")


def test_a_neighbour_given_at_the_start_calls_until_set_to_zero() -> None:
    with run_emulator_in_thread(Dataset(batches=1), Behaviour(neighbour_rps=20)) as emulator:
        time.sleep(0.5)
        emulator.set_neighbour(0)
        time.sleep(0.1)
        called = emulator.counters.neighbour_requests
        assert 5 <= called <= 11 and emulator.counters.neighbour_throttled == 0  # no quota
        time.sleep(0.2)
        assert emulator.counters.neighbour_requests == called


def test_a_new_neighbour_rate_applies_at_once_and_bad_values_are_refused() -> None:
    with run_emulator_in_thread(Dataset(batches=1), Behaviour(neighbour_rps=0.1)) as emulator:
        emulator.set_neighbour(50)  # not after the 10 s the old rate would wait
        time.sleep(0.5)
        assert emulator.counters.neighbour_requests >= 10
        emulator.set_neighbour(0)
        time.sleep(0.1)
        stopped = emulator.counters.neighbour_requests
        time.sleep(0.3)
        assert emulator.counters.neighbour_requests == stopped
        for rate, burst in ((0, None), (-1, None), (math.nan, None), (10, 0.5), (10, math.inf)):
            with pytest.raises(ValueError, match="must be"):
                emulator.set_quota(rate, burst)
        for rps in (-1, 5000, math.inf, "3"):
            with pytest.raises(ValueError, match="must be"):
                emulator.set_neighbour(rps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate must be"):
        Behaviour(rate=0)
