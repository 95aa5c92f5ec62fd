"""The fixture users get by installing the package (the pytest11 entry point)."""

from typing import Any

import boto3
from botocore.config import Config

from omics_batch_runs import add_missing_operations, iter_runs
from omics_batch_runs.emulator import Emulator


def boto3_listing(emulator: Emulator) -> list[dict[str, Any]]:
    session = boto3.Session()
    add_missing_operations(session)
    client = session.client(
        "omics", endpoint_url=emulator.endpoint_url, config=Config(inject_host_prefix=False)
    )
    paginator = client.get_paginator("list_runs_in_batch")
    return [
        {"batchId": batch_id, **run}
        for batch_id in emulator.batch_ids
        for page in paginator.paginate(batchId=batch_id)
        for run in page["runs"]
    ]


def total(emulator: Emulator) -> int:
    return sum(b.total_runs for b in emulator.dataset.batches)


def test_a_plain_test_with_boto3(omics_emulator: Emulator) -> None:
    assert len(boto3_listing(omics_emulator)) == total(omics_emulator)


async def test_an_async_test_with_the_library(omics_emulator: Emulator) -> None:
    url = omics_emulator.endpoint_url
    runs = [r async for r in iter_runs(omics_emulator.batch_ids, endpoint_url=url)]
    assert len(runs) == total(omics_emulator)


async def test_a_blocking_call_from_an_async_test(omics_emulator: Emulator) -> None:
    assert len(boto3_listing(omics_emulator)) == total(omics_emulator)
