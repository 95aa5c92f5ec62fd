"""Shared fixtures: an emulator on this test's event loop, and clients that talk to it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
import pytest_asyncio
from botocore.config import Config

from omics_batch_runs import Selection, add_missing_operations, sync
from omics_batch_runs.emulator import Dataset, Emulator, run_emulator, run_emulator_in_thread


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a Region; nothing from the developer's own AWS setup."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEMULATOREXAMPLE0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "emulator-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """12 batches of mixed sizes (some empty, some with thousands of runs)."""
    async with run_emulator(Dataset(seed=1, batches=12)) as running:
        yield running


@functools.cache
def boto3_client(endpoint_url: str) -> Any:
    """The reference client: boto3, host prefix off, its retries off."""
    session = boto3.Session()
    add_missing_operations(session)  # an older botocore lacks the operations
    return session.client(
        "omics",
        endpoint_url=endpoint_url,
        config=Config(inject_host_prefix=False, retries={"total_max_attempts": 1}),
    )


def paginate_with_boto3(endpoint_url: str, batch_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every run of a batch through boto3's own paginator (blocking: run in a thread)."""
    paginator = boto3_client(endpoint_url).get_paginator("list_runs_in_batch")
    return [
        {"batchId": batch_id, **run}
        for page in paginator.paginate(batchId=batch_id, **params)
        for run in page["runs"]
    ]


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking clients must not block the loop the emulator serves on."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def reference_runs(emulator: Emulator, batch_ids: list[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for batch_id in batch_ids:
        runs.extend(await in_thread(paginate_with_boto3, emulator.endpoint_url, batch_id))
    return runs


def by_key(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Runs keyed by (batch, runSettingId); fails on a duplicate."""
    keyed: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        key = (run["batchId"], run["runSettingId"])
        assert key not in keyed, f"run {key} delivered twice"
        keyed[key] = run
    return keyed


@pytest.fixture
def served() -> Iterator[Emulator]:
    """The `emulator` fixture's data, served from a thread: for the CLI and other blocking code."""
    with run_emulator_in_thread(Dataset(seed=1, batches=12)) as running:
        yield running


@pytest.fixture
def mirror(tmp_path: Path, served: Emulator) -> Path:
    """The `served` emulator's batches synced into a mirror, execution statuses included."""
    db = tmp_path / "m.db"
    selection = Selection(discover={})
    anyio.run(lambda: sync(db, selection, endpoint_url=served.endpoint_url, run_status=True))
    return db
