from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiobotocore.session import AioSession
from botocore.loaders import create_loader

import omics_batch_runs
from omics_batch_runs import add_missing_operations, iter_runs
from omics_batch_runs.client import aiobotocore_session, client_config
from omics_batch_runs.emulator import Emulator

from .test_paging import expected_runs

EXTRAS = Path(omics_batch_runs.__file__).parent / "data/omics/2022-11-28/service-2.sdk-extras.json"


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "documentation"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def test_the_extras_agree_with_botocores_own_model_where_it_has_one() -> None:
    extras = orjson.loads(EXTRAS.read_bytes())["merge"]
    model = create_loader().load_service_model("omics", "service-2", "2022-11-28")
    if "ListRunsInBatch" not in model["operations"]:
        pytest.skip("this botocore predates the run-batch operations")
    for name, operation in extras["operations"].items():
        assert _strip(model["operations"][name]) == operation
    for name, shape in extras["shapes"].items():
        assert _strip(model["shapes"][name]) == shape, name


async def test_the_session_knows_the_operations_whatever_the_botocore() -> None:
    session = AioSession()
    add_missing_operations(session)
    model = session.get_service_model("omics")
    if inspect.isawaitable(model):  # aiobotocore 3 made it a coroutine
        model = await model
    for name in ("ListRunsInBatch", "ListBatch", "GetBatch"):
        assert model.operation_model(name).http["method"] == "GET"


def test_host_prefix_is_off_only_for_a_custom_endpoint() -> None:
    assert client_config(pool=4, endpoint_url="http://127.0.0.1:1").inject_host_prefix is False
    assert client_config(pool=4, endpoint_url=None).inject_host_prefix is True
    config = client_config(pool=7, endpoint_url=None)
    assert config.max_pool_connections == 7
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}


def test_sessions_accepted() -> None:
    session = AioSession()
    assert aiobotocore_session(session) is session
    assert isinstance(aiobotocore_session(None), AioSession)
    with pytest.raises(TypeError, match="expected an aiobotocore or aioboto3 session"):
        aiobotocore_session(object())


def test_add_missing_operations_takes_every_kind_of_session() -> None:
    import boto3
    from botocore.session import Session

    for session in (Session(), AioSession(), boto3.Session()):
        add_missing_operations(session)  # returns whether it was needed: this botocore's age
        core = getattr(session, "_session", session)
        model = core.get_component("data_loader").load_service_model("omics", "service-2")
        assert "ListRunsInBatch" in model["operations"]
    with pytest.raises(TypeError, match="expected a botocore, boto3 or aioboto3 session"):
        add_missing_operations(object())


async def test_an_aioboto3_session_works(emulator: Emulator) -> None:
    aioboto3 = pytest.importorskip("aioboto3", reason="aioboto3 is in the compat environment")
    session = aioboto3.Session(region_name="us-east-1")
    add_missing_operations(session)  # what a user with their own aioboto3 client would do
    ids = emulator.batch_ids[:4]
    runs = [r async for r in iter_runs(ids, session=session, endpoint_url=emulator.endpoint_url)]
    assert runs and sorted(runs, key=str) == sorted(expected_runs(emulator, ids), key=str)
