"""A pytest fixture for users' own test suites: `omics_emulator`, a running emulator.

Registered as a pytest plugin, so installing the package is enough. The emulator runs in
a thread of its own, so the fixture serves plain tests (boto3, the AWS CLI) and async
tests (any loop, blocking calls included) alike, as moto's and pytest-httpserver's do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import Emulator, run_emulator_in_thread


@pytest.fixture
def omics_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator with the default data set, and dummy credentials in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_OMICS"):
        monkeypatch.delenv(name, raising=False)
    with run_emulator_in_thread() as emulator:
        yield emulator
