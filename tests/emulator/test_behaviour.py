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
