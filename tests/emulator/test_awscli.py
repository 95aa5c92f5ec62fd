"""Fidelity against the AWS CLI, a client nobody here wrote. Skipped where it is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from omics_batch_runs.emulator import Behaviour, Dataset, Emulator, run_emulator

from ..conftest import in_thread

AWS = shutil.which("aws")
pytestmark = pytest.mark.skipif(AWS is None, reason="the AWS CLI (aws) is not installed")


def aws(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_DISABLE_HOST_PREFIX_INJECTION": "true", "AWS_PAGER": ""}
    command = [AWS or "aws", "omics", *args, "--endpoint-url", endpoint, "--output", "json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def listed(result: subprocess.CompletedProcess[str], key: str) -> list[Any]:
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)[key])


def runs_of(endpoint: str, batch_id: str) -> list[Any]:
    """Every run of a batch, as the CLI paginates it with pages of 40."""
    result = aws(endpoint, "list-runs-in-batch", "--batch-id", batch_id, "--page-size", "40")
    return listed(result, "runs")


async def test_cli_lists_batches_and_paginates_every_batch(emulator: Emulator) -> None:
    batches = listed(await in_thread(aws, emulator.endpoint_url, "list-batch"), "items")
    assert [b["id"] for b in batches] == emulator.batch_ids
    for batch in emulator.dataset.batches:
        runs = await in_thread(runs_of, emulator.endpoint_url, batch.id)
        assert runs == list(emulator.dataset.runs(batch))


async def test_cli_is_throttled_yet_completes() -> None:
    data = Dataset(seed=4, sizes=[400, 90])
    async with run_emulator(data, Behaviour(rate=2, burst=2)) as emulator:
        for batch in data.batches:
            assert await in_thread(runs_of, emulator.endpoint_url, batch.id) == list(
                data.runs(batch)
            )
        assert emulator.counters.throttled > 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--batch-id", "999"], "ResourceNotFoundException"),
        (
            ["--batch-id", "{first}", "--run-id", "1", "--run-setting-id", "x"],
            "ValidationException",
        ),
        (
            ["--batch-id", "{first}", "--max-items", "101", "--page-size", "101"],
            "ValidationException",
        ),
    ],
)
async def test_cli_gets_modeled_errors(emulator: Emulator, args: list[str], code: str) -> None:
    argv = [a.format(first=emulator.batch_ids[1]) for a in args]
    result = await in_thread(aws, emulator.endpoint_url, "list-runs-in-batch", *argv)
    assert result.returncode != 0
    assert f"({code})" in result.stderr


async def test_cli_unsigned_request_is_denied(emulator: Emulator) -> None:
    argv = ["list-runs-in-batch", "--batch-id", emulator.batch_ids[0], "--no-sign-request"]
    result = await in_thread(aws, emulator.endpoint_url, *argv)
    assert result.returncode != 0
    assert "(AccessDeniedException)" in result.stderr
