import math

import pytest

from omics_batch_runs.emulator import Behaviour
from omics_batch_runs.emulator.behaviour import TokenBucket


def test_token_bucket_allows_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=0.001, burst=5)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2


def test_scripted_faults_come_in_order_then_random_ones() -> None:
    b = Behaviour(seed=1)
    b.script(["drop", None, "timeout"])
    assert [b.fault("ListRunsInBatch") for _ in range(4)] == ["drop", None, "timeout", None]


def test_fault_rates_are_honoured() -> None:
    b = Behaviour(timeout_rate=0.1, error_rate=0.1, drop_rate=0.1, seed=3)
    faults = [b.fault("ListRunsInBatch") for _ in range(3000)]
    for kind in ("timeout", "error", "drop"):
        assert 200 < faults.count(kind) < 400


def test_a_changed_quota_keeps_what_the_bucket_holds() -> None:
    b = Behaviour(rate=0.001, burst=5)
    assert [b.throttled("ListRunsInBatch") for _ in range(3)] == [False] * 3  # 2 tokens left
    b.set_quota(0.001, 20)  # a raise grants no burst of its own
    assert [b.throttled("ListRunsInBatch") for _ in range(3)] == [False, False, True]
    b.set_quota(None)
    assert not any(b.throttled("ListRunsInBatch") for _ in range(50))


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout_rate": 0.5, "error_rate": 0.4, "drop_rate": 0.3},  # 1.2 of every request
        {"drop_rate": -0.1},
        {"latency_ms": math.nan},
        {"latency_ms": math.inf},
        {"rate": None, "burst": 5},
    ],
)
def test_behaviour_that_cannot_be_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Behaviour(**bad)  # type: ignore[arg-type]
