"""A client-side rate controller that finds the service's quota and holds just under it.

Backing off per request cannot find a rate: every task waits on its own and they all come
back together. One controller shared by every pagination paces the requests instead:

- it starts at 10 requests/s (the documented quota of the HealthOmics list APIs), 10 of
  them at once (the second's worth a bucket at that quota holds), and doubles every 25 ms
  until the first throttle (slow start), so a burst of concurrent first requests does not
  drain the service's bucket before anything is known;
- on a throttle, the rate drops to just under the rate of *successful* requests since the
  previous throttle: the service's bucket was empty at both, so what got through in
  between (counted by when it was sent) is what it refilled, the quota itself or less;
- while nothing is throttled, the rate grows slowly near the last quota and faster away
  from it (cubic growth, as in TCP CUBIC), so a raised quota is found within seconds;
- with too few successes to measure, it starts again from half of what was sent in the
  last second and doubles every quarter second until the next throttle measures.

Throttles of requests sent before the last cut are ignored: they answer the old rate.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

_INITIAL = 10.0  # requests/s to start from
_START_CREDIT = 10.0  # requests that may go at once at the start
_START_DOUBLING = 0.025  # seconds per doubling before the first throttle
_DOUBLING = 0.25  # seconds per doubling in a later slow start
_LOOKBACK = 30.0  # seconds of successes kept to measure the quota over
_SETTLE = 0.5  # seconds after a measure too short to measure over: a throttle then holds
_MIN_EVIDENCE = 3  # successes needed to measure the quota at all
_BACKOFF = 0.97  # share of the measured quota held after a throttle
_GROWTH_TIME = 12.0  # seconds without throttles for the rate to double
_FLOOR = 0.5  # requests/s: never slower than this
_CEILING = 100_000.0  # requests/s: never faster (beyond any quota, and keeps waits finite)
_MIN_WAIT = 1e-6  # seconds: the shortest wait reported, so that waiting always moves time
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
        self._last_read = -math.inf
        self._sleep = sleep
        self._lock = anyio.Lock(fast_acquire=True)
        self._base = _INITIAL  # the rate at the last cut (or the start)
        self._doubling: float | None = _START_DOUBLING  # slow start; None: cubic growth
        self._cut_at: float | None = None  # None: nothing sent yet
        self._measured_at: float | None = None  # None: never throttled
        self._stamp = 0.0
        # A cap is a cap from the first second: then one request at once, not ten.
        self._tokens = _START_CREDIT if max_rps is None else min(_START_CREDIT, 1.0)
        self._successes: deque[float] = deque()
        self._sends: deque[float] = deque()

    def _now(self) -> float:
        """The clock. If it went back, every time kept moves back with it, so that spans
        stay true and nothing waits for a moment that was already passed."""
        now = self._clock()
        if now < self._last_read:
            back = self._last_read - now
            self._stamp -= back
            if self._cut_at is not None:
                self._cut_at -= back
            if self._measured_at is not None:
                self._measured_at -= back
            self._successes = deque(t - back for t in self._successes)
            self._sends = deque(t - back for t in self._sends)
        self._last_read = now
        return now

    @property
    def rate(self) -> float:
        """Requests/s allowed now."""
        # Growth is capped far above any quota, so the arithmetic stays finite however
        # long nothing was throttled.
        elapsed = 0.0 if self._cut_at is None else self._now() - self._cut_at
        if self._doubling is not None:
            grown = self._base * math.pow(2.0, min(elapsed / self._doubling, 40.0))
        else:
            grown = self._base * (1.0 + min(elapsed / _GROWTH_TIME, 1e4) ** 3)
        grown = min(max(_FLOOR, grown), _CEILING)
        return grown if self.max_rps is None else min(grown, self.max_rps)

    def take(self) -> float:
        """Take a send slot if one is free (returns 0), else how long until one is."""
        now = self._now()
        if self._cut_at is None:
            self._cut_at = self._stamp = now
        rate = self.rate
        # Refills up to one request; only the start credit is more than that.
        refill = max(0.0, now - self._stamp) * rate
        self._tokens = min(max(1.0, self._tokens), self._tokens + refill)
        self._stamp = now
        if self._tokens < 1.0 - 1e-9:
            return max(_MIN_WAIT, (1.0 - self._tokens) / rate)
        self._tokens = max(0.0, self._tokens - 1.0)
        self._sends.append(now)
        _forget_before(self._sends, now - 1.0)
        return 0.0

    async def acquire(self) -> float:
        """Wait for a send slot, first come first served; returns the send time."""
        async with self._lock:
            while (wait := self.take()) > 0:
                # Short naps: a rate that grows, or is cut, applies to who already waits.
                await self._sleep(min(wait, _MAX_NAP))
        return self._now()

    def on_success(self, sent_at: float) -> None:
        """A request sent at `sent_at` (from `acquire`) succeeded.

        Successes are counted by when they were sent: a token the service gave out before
        its bucket ran dry must not count towards what it refills after.
        """
        self._successes.append(sent_at)
        _forget_before(self._successes, self._now() - _LOOKBACK)

    def on_throttle(self, sent_at: float) -> None:
        if self._cut_at is not None and sent_at < self._cut_at:
            return
        now = self._now()
        current = self.rate
        if self._measured_at is not None and now - self._measured_at < _SETTLE:
            # Too soon after a measure to measure again: hold the rate reached and grow
            # from there; in slow start it has overshot by up to a doubling, so halve it.
            self._base = current / 2.0 if self._doubling is not None else current
            self._doubling = None
        else:
            # The bucket was empty at the last measure (or is new) and is empty now.
            if self._measured_at is None:
                start, span = now - 1.0, 1.0  # at most a second, and at least: a burst
            else:
                start = max(self._measured_at, now - _LOOKBACK)
                span = max(now - start, _SETTLE)
            succeeded = sum(1 for t in self._successes if t > start)
            if succeeded < _MIN_EVIDENCE:
                sent = sum(1 for t in self._sends if t > now - 1.0)
                self._base, self._doubling = max(_FLOOR, sent / 2.0), _DOUBLING
            else:
                measured = succeeded / span
                self._base, self._doubling = max(_FLOOR, min(current, measured) * _BACKOFF), None
            self._measured_at = now
        self._cut_at = self._stamp = now
        self._tokens = 0.0


def _forget_before(times: deque[float], cutoff: float) -> None:
    """Drop the oldest entries at or before `cutoff` (a request may outlast the look-back)."""
    while times and times[0] <= cutoff:
        times.popleft()
