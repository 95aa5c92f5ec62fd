"""Service behaviour the emulator can put on: a quota, latency and faults."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Fault = Literal["throttle", "timeout", "error", "drop"]
FAULTS: tuple[Fault, ...] = ("throttle", "timeout", "error", "drop")


class TokenBucket:
    """The service's per-operation quota: `rate` requests/s, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retune(self, rate: float, burst: float) -> None:
        """A new quota from now on. The bucket keeps what it holds (up to the new burst):
        a changed quota grants no burst of its own."""
        self._refill()
        self.rate, self.burst = rate, max(1.0, burst)
        self._tokens = min(self._tokens, self.burst)


def check_quota(rate: float | None, burst: float | None) -> None:
    if rate is None and burst is not None:
        raise ValueError("a burst needs a rate")
    if rate is not None and not (_number(rate) and 0 < rate < math.inf):
        raise ValueError(f"rate must be a number of requests/s above 0, not {rate!r}")
    if burst is not None and not (_number(burst) and 1 <= burst < math.inf):
        raise ValueError(f"burst must be a number of requests, at least 1, not {burst!r}")


def check_neighbour(rps: float) -> None:
    if not (_number(rps) and 0 <= rps <= 1000):
        raise ValueError(f"neighbour calls/s must be 0 to 1000, not {rps!r}")


def check_faults(*rates: float) -> None:
    if not all(_number(r) and 0 <= r <= 1 for r in rates):
        raise ValueError(f"fault shares must be numbers from 0 to 1, not {rates!r}")
    if sum(rates) > 1:
        raise ValueError(f"the shares of 408s, 500s and drops add up to more than 1: {rates!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Behaviour:
    """What the emulator does besides answering. Every field can change while it runs."""

    rate: float | None = None
    burst: float | None = None
    latency_ms: float = 0.0
    jitter: float = 0.2
    timeout_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    neighbour_rps: float = 0.0  # another tool's steady calls on this quota (set_neighbour)

    def __post_init__(self) -> None:
        check_quota(self.rate, self.burst)
        check_neighbour(self.neighbour_rps)
        check_faults(self.timeout_rate, self.error_rate, self.drop_rate)
        if not (_number(self.latency_ms) and 0 <= self.latency_ms < math.inf):
            raise ValueError(f"latency must be a number of ms, 0 or more, not {self.latency_ms!r}")
        self._rng = random.Random(self.seed)
        self._buckets: dict[str, TokenBucket] = {}
        self._scripted: deque[Fault | None] = deque()

    def set_quota(self, rate: float | None, burst: float | None = None) -> None:
        """Change the quota while running (None: no quota). Buckets keep their tokens."""
        check_quota(rate, burst)
        self.rate, self.burst = rate, burst
        if rate is None:
            self._buckets.clear()
            return
        for bucket in self._buckets.values():
            bucket.retune(rate, burst if burst is not None else rate)

    def script(self, faults: Iterable[Fault | None]) -> None:
        """Answer the next ListRunsInBatch requests with these faults, in order (None: answer)."""
        self._scripted.extend(faults)

    def delay(self) -> float:
        if self.latency_ms <= 0:
            return 0.0
        spread = self.jitter * self._rng.uniform(-1.0, 1.0)
        return self.latency_ms * (1.0 + spread) / 1000.0

    def throttled(self, operation: str) -> bool:
        if self.rate is None:
            return False
        bucket = self._buckets.get(operation)
        if bucket is None:
            burst = self.burst if self.burst is not None else self.rate
            bucket = self._buckets[operation] = TokenBucket(self.rate, burst)
        return not bucket.take()

    def fault(self, operation: str) -> Fault | None:
        if operation == "ListRunsInBatch" and self._scripted:
            return self._scripted.popleft()
        rates: tuple[tuple[Fault, float], ...] = (
            ("timeout", self.timeout_rate),
            ("error", self.error_rate),
            ("drop", self.drop_rate),
        )
        p = self._rng.random()
        for name, rate in rates:
            if p < rate:
                return name
            p -= rate
        return None
