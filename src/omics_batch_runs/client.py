"""Making the aiobotocore client: retries off, pool sized to the concurrency, and the
run-batch operations added to botocore models that predate them."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from aiobotocore.session import AioSession, get_session
from botocore.config import Config
from botocore.loaders import create_loader
from botocore.session import Session
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from .errors import InvalidInput
from .service import API_VERSION, SERVICE_NAME

_DATA = Path(__file__).parent / "data"
_OPERATIONS = ("ListRunsInBatch", "ListBatch", "GetBatch", "StartRunBatch")


@cache
def _bundled_model_lacks_batches() -> bool:
    model = create_loader().load_service_model(SERVICE_NAME, "service-2", API_VERSION)
    return not all(op in model["operations"] for op in _OPERATIONS)


def add_missing_operations(session: Any) -> bool:
    """Teach an older botocore (aioboto3 15.x pins 1.40) the run-batch operations.

    Adds this package's `service-2.sdk-extras.json` (and the paginators') to the data path
    of a session (botocore's, aiobotocore's, boto3's or aioboto3's), which botocore merges
    into the omics model. Returns whether it was needed.
    """
    inner = getattr(session, "_session", None)  # boto3 and aioboto3 sessions wrap one
    core = inner if isinstance(inner, Session) else session
    if not isinstance(core, Session):
        raise TypeError(f"expected a botocore, boto3 or aioboto3 session, got {type(session)}")
    if not _bundled_model_lacks_batches():
        return False
    loader = core.get_component("data_loader")
    if str(_DATA) not in loader.search_paths:
        loader.search_paths.append(str(_DATA))
    return True


def aiobotocore_session(session: Any = None) -> AioSession:
    """An aiobotocore session from None (the default chain), itself, or an aioboto3.Session."""
    if session is None:
        return get_session()
    if isinstance(session, AioSession):
        return session
    inner = getattr(session, "_session", None)  # aioboto3.Session wraps an AioSession
    if isinstance(inner, AioSession):
        return inner
    raise TypeError(f"expected an aiobotocore or aioboto3 session, got {type(session).__name__}")


def check_endpoint_url(url: object, name: str = "endpoint_url") -> None:
    """Refuse, before any request, an endpoint botocore would fail on only when sending."""
    problem = _url_problem(url) if isinstance(url, str) else "not a string"
    if problem:
        shown = re.sub(r"//[^/@]*@", "//[redacted]@", str(url))  # a password stays out of it
        raise InvalidInput(
            f"{name} {shown!r} is not a URL ({problem}), such as http://127.0.0.1:8080"
        )


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port  # out of range or not a number: ValueError
    except ValueError as e:
        return str(e)
    if not parts.scheme or not parts.netloc:
        return "give its scheme"
    if parts.scheme not in ("http", "https"):
        return "http or https only"
    if parts.username or parts.password:
        return "no user or password in it"
    if any(c.isspace() for c in url):
        return "it holds a space"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "give no path"
    host_ok = is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)
    return None if host_ok and port != 0 else "not a valid host and port"


def _configured_endpoint() -> bool:
    """An endpoint botocore takes from the environment, as the AWS CLI does."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return False
    return bool(os.environ.get("AWS_ENDPOINT_URL_OMICS") or os.environ.get("AWS_ENDPOINT_URL"))


def client_config(*, pool: int, endpoint_url: str | None) -> Config:
    options: dict[str, Any] = {
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "max_pool_connections": pool,
        "user_agent_extra": f"omics-batch-runs/{version('omics-batch-runs')}",
    }
    if endpoint_url or _configured_endpoint():
        # The operations carry the `workflows-` host prefix, which breaks local endpoints.
        options["inject_host_prefix"] = False
    return Config(**options)


def _load_models(session: AioSession) -> None:
    """What making a client reads from disk (botocore's JSON models, about 0.1 s), read in
    a thread: the caller's event loop never stalls on it, and its cache serves the client."""
    add_missing_operations(session)
    loader = session.get_component("data_loader")
    for type_name in ("service-2", "endpoint-rule-set-1"):
        loader.load_service_model(SERVICE_NAME, type_name, API_VERSION)
    session._get_internal_component("endpoint_resolver")  # what create_client uses


@asynccontextmanager
async def open_client(
    *,
    client: Any = None,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    pool: int = 16,
) -> AsyncIterator[Any]:
    """Use `client` as it is, or make one (and close it afterwards)."""
    if client is not None:
        yield client
        return
    aio = await anyio.to_thread.run_sync(aiobotocore_session, session)
    await anyio.to_thread.run_sync(_load_models, aio)
    config = client_config(pool=pool, endpoint_url=endpoint_url)
    async with aio.create_client(
        SERVICE_NAME, region_name=region_name, endpoint_url=endpoint_url, config=config
    ) as made:
        yield made
