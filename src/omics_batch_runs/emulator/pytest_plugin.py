"""A pytest fixture for users' own test suites: `omics_emulator`, a running emulator.

Registered as a pytest plugin, so installing the package is enough. The fixture is async
(asyncio) and needs pytest-asyncio; without it, this plugin adds nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.util import find_spec

import pytest

from .server import Emulator, run_emulator

if find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def omics_emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
        """An emulator with the default data set, and dummy credentials in the environment."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        async with run_emulator() as emulator:
            yield emulator
