"""A client-side rate controller that finds the service's quota and holds just under it.

Backing off per request cannot find a rate: every task waits on its own and they all come
back together. One controller shared by every pagination paces the requests instead:

- until the first throttle, requests are limited only by the concurrency (and `max_rps`);
- on a throttle, the rate drops to just under the rate of *successful* requests since the
  previous throttle: the service's bucket was empty at both, so what got through in
  between is what it refilled, the quota itself (never more);
- while nothing is throttled, the rate grows slowly near the last quota and faster away
  from it (cubic growth, as in TCP CUBIC), so a raised quota is found within seconds;
- with too few successes to measure (a throttle at start-up), it starts from half of what
  was sent in the last second and doubles every quarter second until the next throttle
  measures the quota (slow start).

Throttles of requests sent before the last cut are ignored: they answer the old rate.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

_LOOKBACK = 30.0  # seconds of successes kept to measure the quota over
_SETTLE = 0.5  # seconds after a cut too short to measure over: a throttle then only holds
_MIN_EVIDENCE = 3  # successes needed to measure the quota at all
_BACKOFF = 0.97  # share of the measured quota held after a throttle
_GROWTH_TIME = 12.0  # seconds without throttles for the rate to double
_DOUBLING_TIME = 0.25  # seconds per doubling in slow start
_FLOOR = 0.5  # requests/s: never slower than this
_MAX_NAP = 0.05  # seconds a waiter sleeps before it looks at the rate again


class AdaptiveRate:
    """Shared pacing of requests: one per account and Region, however many paginations."""

    def __init__(
        self,
        max_rps: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.max_rps = max_rps
        self._clock = clock
        self._sleep = sleep
        self._lock = anyio.Lock()
        self._base: float | None = None  # the rate set at the last cut; None: no throttle yet
        self._slow_start = False
        self._cut_at = self._stamp = self._measured_at = clock()
        self._tokens = 1.0
        self._successes: deque[float] = deque()
        self._sends: deque[float] = deque()

    @property
    def rate(self) -> float | None:
        """Requests/s allowed now; None means unlimited."""
        if self._base is None:
            return self.max_rps
        elapsed = self._clock() - self._cut_at
        if self._slow_start:
            grown = self._base * math.pow(2.0, min(elapsed / _DOUBLING_TIME, 30.0))
        else:
            grown = self._base * (1.0 + (elapsed / _GROWTH_TIME) ** 3)
        return grown if self.max_rps is None else min(grown, self.max_rps)

    def take(self) -> float:
        """Take a send slot if one is free (returns 0), else how long until one is."""
        rate = self.rate
        now = self._clock()
        if rate is not None:
            self._tokens = min(1.0, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if self._tokens < 1.0 - 1e-9:
                return (1.0 - self._tokens) / rate
            self._tokens = max(0.0, self._tokens - 1.0)
        self._sends.append(now)
        while self._sends[0] <= now - 1.0:
            self._sends.popleft()
        return 0.0

    async def acquire(self) -> float:
        """Wait for a send slot, first come first served; returns the send time."""
        if self.rate is None:
            self.take()
        else:
            async with self._lock:
                while (wait := self.take()) > 0:
                    # Short naps: a rate that grows, or is cut, applies to who already waits.
                    await self._sleep(min(wait, _MAX_NAP))
        return self._clock()

    def on_success(self) -> None:
        now = self._clock()
        self._successes.append(now)
        while self._successes[0] <= now - _LOOKBACK:
            self._successes.popleft()

    def on_throttle(self, sent_at: float) -> None:
        if self._base is not None and sent_at < self._cut_at:
            return
        now = self._clock()
        current = self.rate
        first = self._base is None or current is None
        if not first and now - self._measured_at < _SETTLE:
            # Too soon after a cut to measure: hold the rate reached, and grow from there.
            self._base, self._slow_start = current, False
        else:
            # The bucket was empty at the last measure and is empty now: what got through
            # in between is what it refilled, the quota (or less, never more).
            start = now - 1.0 if first else max(self._measured_at, now - _LOOKBACK)
            succeeded = sum(1 for t in self._successes if t > start)
            if succeeded < _MIN_EVIDENCE:
                # Too little got through to measure: from half of what was sent in the
                # last second, double until the next throttle measures the quota.
                sent = sum(1 for t in self._sends if t > now - 1.0)
                self._base, self._slow_start = max(_FLOOR, sent / 2.0), True
            else:
                measured = succeeded / (now - start)
                base = measured if current is None else min(current, measured)
                self._base, self._slow_start = max(_FLOOR, base * _BACKOFF), False
            self._measured_at = now
        self._cut_at = self._stamp = now
        self._tokens = 0.0
