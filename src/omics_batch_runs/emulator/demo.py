"""The data and behaviour `export --emulator` (and so `make demo`) runs against."""

from __future__ import annotations

from .behaviour import Behaviour
from .dataset import Dataset


def demo_service() -> tuple[Dataset, Behaviour]:
    """About 100,000 runs in 80 batches of mixed sizes, under a quota of 100 requests/s
    with 30 ms latency and a 1% fault rate: enough to see the rate found and held."""
    dataset = Dataset(seed=7, batches=80)
    behaviour = Behaviour(
        rate=100.0,
        burst=50.0,
        latency_ms=30.0,
        timeout_rate=0.004,
        error_rate=0.003,
        drop_rate=0.003,
        seed=7,
    )
    return dataset, behaviour
