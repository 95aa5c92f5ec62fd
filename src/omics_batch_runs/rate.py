"""A client-side rate controller: nearly all of what the quota leaves free, few throttles.

The quota is per account and Region, and every tool of a team draws on it: each throttle
this causes also empties the bucket for whoever else calls at that moment. Backing off per
request cannot find a rate (every task waits on its own and they all come back together),
so one controller shared by every pagination paces the requests:

- Start: 5 requests (half a second's worth at the documented 10 req/s), released as
  answers come back, so that two exports starting together do not both overdraw one
  bucket; then 10 req/s, doubling every 100 ms until the first throttle. While one
  request at a time is well over 10 req/s and what was sent would fit a documented
  bucket, the ramp sends one at a time: the request that finds the bucket dry is the only
  one on its way, so the start costs one throttle.
- First estimate, at the first throttle: the bucket was full at the start, assumed to hold
  a second's worth (as AWS's do), so the quota is what got through over a second plus the
  time since the first request. That assumes the account to itself, so the rate drops to
  60% of it and comes back up over 1.5 s: another tool's share then shows as a throttle,
  and is measured, before its calls are starved.
- Measure, at a later throttle: the bucket is empty at each throttle, so what got through
  since the last one (counted by when it was sent, with what was still on its way back) is
  what the bucket refilled: the quota, or less if it overflowed while this held below it.
  Over the last seconds alone, what got through less a second's worth the bucket may have
  held is at most the quota too: after a rise, that shows it at once.
- Hold: just under the measure (1%, or more for a measure of few requests), for 250
  requests (25 s at 10 req/s, 30 s at most). A probe costs about one throttle, so this
  keeps throttles near 0.5%, and the bucket never runs dry for anyone else in between.
  Sends are paced with a little jitter: when the bucket is empty, a client paced evenly
  wins nearly every new token against one that calls less often, and never sees the
  throttles it causes; with jitter, it loses its share of the races and sees them.
- Probe: then the rate grows (cubic) above the measure until a throttle measures again: a
  raised quota is found at the next probe, a lowered one at once. A measure far above the
  last one (the quota rose, or a client left) probes again a second later.
- A throttle under half a second after a measure pauses a request and lets the next one
  measure, from the same empty bucket. Throttles of requests sent before the last cut are
  ignored: they answer the old rate.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from .errors import InvalidInput, UnsupportedEventLoop
from .options import check_max_rps

_INITIAL = 10.0  # requests/s: the documented quota, where the start begins
_START_CREDIT = 5.0  # requests that may go before the rate applies: half a bucket
_CREDIT_WAIT = 1.0  # seconds the start credit waits for answers, at most
_CREDIT_NAP = 0.005  # seconds between looks for them
_START_DOUBLING = 0.1  # seconds per doubling before the first throttle
_ONE_AT_A_TIME = 1.5  # times the documented quota one request at a time must reach
_BURST = 1.0  # seconds of quota a full bucket is assumed to hold, at most
_START_SHARE = 0.6  # of the first estimate held at first,
_START_HOLD = 0.5  # for this many seconds,
_START_RAMP = 1.5  # then back up to it over this many,
_FIRST_PROBE = 5.0  # and the first probe this many seconds after the first throttle
_IDLE = 1.0  # seconds without a send after which the bucket is taken to be full again
_LOOKBACK = 120.0  # seconds of successes kept to measure over
_WINDOWS = (1.0, 2.0, 4.0, 8.0)  # seconds before a throttle that also measure
_SETTLE = 0.5  # seconds after a measure too short to measure over
_MIN_EVIDENCE = 3  # successes needed to measure at all
_HOLD = 0.99  # share of the measured quota held between probes, at most
_MARGIN_REQUESTS = 1.0  # or below it by this many requests of the measure's,
_MAX_MARGIN = 0.15  # but by no more than this share
_DIP = 0.95  # share held just after a cut, while the bucket refills for everyone
_DIP_TIME = 0.5  # seconds
_PAUSE = 1.0  # requests not sent after a cut, so that the bucket holds one again
_HOLD_REQUESTS = 250.0  # requests between two probes (at 10 req/s or more)
_HOLD_FLOOR = 5.0  # requests/s: a smaller share probes as often as this would
_SPAN_HOLD = 3.0  # times a short measure's span held before the next probe
_MIN_HOLD, _MAX_HOLD = 1.0, 30.0  # seconds between a cut and the next probe
_RISE = 1.0  # seconds' worth of the estimate through beyond it: capacity was freed
_PROBE_TIME = 3.0  # seconds for a probe to add the quota (or 10 req/s) again
_FLOOR = 0.5  # requests/s: never slower than this
_CEILING = 100_000.0  # requests/s: never faster (beyond any quota, and keeps waits finite)
_MIN_WAIT = 1e-6  # seconds: the shortest wait reported, so that waiting always moves time
_MAX_NAP = 0.05  # seconds a waiter sleeps before it looks at the rate again
_JITTER = 0.5  # requests: each send lands anywhere in a slot this wide after its turn


class AdaptiveRate:
    """Shared pacing of requests: one per account and Region, however many paginations."""

    def __init__(
        self,
        max_rps: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        check_max_rps(max_rps)
        if rng is not None and not isinstance(rng, random.Random):
            raise InvalidInput(f"rng must be a random.Random, not {type(rng).__name__}")
        self.max_rps = max_rps
        self._clock = clock
        self._last_read = -math.inf
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._jitter = 0.0  # of the last send, in requests after its turn
        self._rtt = 0.0  # the quickest answer yet; 0: none yet
        self._lock = anyio.Lock(fast_acquire=True)
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it paces
        self._binding = threading.Lock()
        self._quota: float | None = None  # None: slow start
        self._margin = 0.0  # below the quota measured, for a request more or less in it
        self._exact = False  # whether the quota was measured from one empty bucket to another
        self._cut_at: float | None = None  # None: nothing sent yet
        self._probe_at = 0.0
        self._measured_at: float | None = None  # None: never throttled
        self._stamp = 0.0
        # A cap is a cap from the first second: then one request at once, not ten.
        self._tokens = _START_CREDIT if max_rps is None else min(_START_CREDIT, 1.0)
        self._successes: deque[float] = deque()
        self._sent = 0
        self._first_sent = self._active_from = 0.0  # the first send, and after a pause
        self._ramp_from: float | None = None  # when the start credit ran out
        self._sends: deque[float] = deque()  # the last seconds'
        self._throttles: deque[float] = deque()  # the last second's

    def _now(self) -> float:
        """The clock. If it went back, every time kept moves back with it, so that spans
        stay true and nothing waits for a moment that was already passed."""
        now = self._clock()
        if now < self._last_read:
            back = self._last_read - now
            self._stamp -= back
            self._probe_at -= back
            self._first_sent -= back
            self._active_from -= back
            if self._ramp_from is not None:
                self._ramp_from -= back
            if self._cut_at is not None:
                self._cut_at -= back
            if self._measured_at is not None:
                self._measured_at -= back
            self._successes = deque(t - back for t in self._successes)
            self._sends = deque(t - back for t in self._sends)
            self._throttles = deque(t - back for t in self._throttles)
        self._last_read = now
        return now

    @property
    def rate(self) -> float:
        """Requests/s allowed now."""
        now = self._now()
        if self._quota is None:
            # Slow start, once the start credit is out; capped far above any quota, so
            # that the arithmetic stays finite.
            ramp = 0.0 if self._ramp_from is None else now - self._ramp_from
            grown = _INITIAL * math.pow(2.0, min(ramp / _START_DOUBLING, 40.0))
        else:
            held = self._quota * min(_HOLD, 1.0 - self._margin)
            assert self._cut_at is not None
            since = now - self._cut_at
            if not self._exact and since < _START_HOLD + _START_RAMP:
                # After the first estimate, which assumed the account to itself: 60% of
                # it, then back up to it, so that another client's share in it shows as a
                # throttle, measured from the first.
                back = max(0.0, since - _START_HOLD) / _START_RAMP
                grown = self._quota * (_START_SHARE + (1.0 - _START_SHARE) * back)
                grown = min(grown, held)
            elif since < _DIP_TIME:
                grown = min(held, self._quota * _DIP)
            elif now < self._probe_at:
                grown = held
            else:
                probing = min((now - self._probe_at) / _PROBE_TIME, 1e4)
                grown = self._quota + max(self._quota, _INITIAL) * probing**3
        grown = min(max(_FLOOR, grown), _CEILING)
        return grown if self.max_rps is None else min(grown, self.max_rps)

    def take(self) -> float:
        """Take a send slot if one is free (returns 0), else how long until one is."""
        now = self._now()
        if self._cut_at is None:
            self._cut_at = self._stamp = self._first_sent = self._active_from = now
        elif self._measured_at is not None and now - self._last_active() > _IDLE:
            # Nothing sent for a while: the bucket refilled, and what got through since
            # the last throttle no longer measures the quota. Estimate anew at the next.
            self._measured_at = None
            self._exact = False
            self._active_from = now
        rate = self.rate
        # Refills up to one request; only the start credit is more than that.
        refill = max(0.0, now - self._stamp) * rate
        self._tokens = min(max(1.0, self._tokens), self._tokens + refill)
        self._stamp = now
        if self._tokens < 1.0 - 1e-9:
            return max(_MIN_WAIT, (1.0 - self._tokens) / rate)
        if (
            self._quota is None
            and self._tokens >= 2.0
            and self._sent > 2 * len(self._successes)
            and now - self._first_sent < _CREDIT_WAIT
        ):
            # The start credit goes out as answers come back, twice as many each time: if
            # another client already emptied the bucket, few are throttled, not all of it.
            return _CREDIT_NAP
        if (
            self._quota is None
            and self._ramp_from is not None
            and 0.0 < self._rtt * _INITIAL * _ONE_AT_A_TIME < 1.0
            and self._sent <= _INITIAL * (_BURST + now - self._first_sent) + 2
            and self._unanswered(max(self._ramp_from, now - _CREDIT_WAIT) - 1e-9, now + 1.0)
        ):
            # While one request at a time is well over the documented quota, and all sent
            # would fit its bucket, the ramp sends one at a time: when the bucket runs dry,
            # no other request is on its way to be throttled too.
            return _CREDIT_NAP
        jitter = _JITTER * self._rng.random() if self._quota is not None else 0.0
        self._tokens = max(0.0, self._tokens - 1.0) - (jitter - self._jitter)
        self._jitter = jitter
        if self._tokens < 1.0 and self._ramp_from is None:
            self._ramp_from = now
        self._sent += 1
        self._sends.append(now)
        _forget_before(self._sends, now - _WINDOWS[-1] - 1.0)
        return 0.0

    def _last_active(self) -> float:
        assert self._cut_at is not None
        return max(self._sends[-1], self._cut_at) if self._sends else self._cut_at

    async def acquire(self) -> float:
        """Wait for a send slot, first come first served; returns the send time."""
        self._bind()
        async with self._lock:
            while (wait := self.take()) > 0:
                # Short naps: a rate that grows, or is cut, applies to who already waits.
                await self._sleep(min(wait, _MAX_NAP))
        return self._now()

    def _bind(self) -> None:
        """One event loop at a time: its lock cannot wake a waiter of another loop, and two
        loops at once on one rate would wait for each other forever."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: the lock's own backend
            return
        if loop is self._loop:
            return  # bound to it already: no lock on the way of every request
        with self._binding:
            if self._loop is not loop and self._loop is not None and self._loop.is_running():
                raise UnsupportedEventLoop(
                    "this AdaptiveRate paces another event loop, still running: make one per"
                    " event loop (thread)"
                )
            self._loop = loop

    def on_success(self, sent_at: float) -> None:
        """A request sent at `sent_at` (from `acquire`) succeeded.

        Successes are counted by when they were sent: a token the service gave out before
        its bucket ran dry must not count towards what it refills after.
        """
        self._successes.append(sent_at)
        now = self._now()  # after the append: a clock that went back moves it too
        if (answered := now - sent_at) > 0.0:
            self._rtt = answered if self._rtt == 0.0 else min(self._rtt, answered)
        _forget_before(self._successes, now - _LOOKBACK)

    def _succeeded_since(self, start: float) -> int:
        return sum(1 for t in self._successes if t > start)

    def _unanswered(self, start: float, end: float) -> int:
        """Requests sent in (start, end) not answered yet: sent before the throttled one,
        they found tokens (or a service error, rarely), only their answers are late."""
        sent = sum(1 for t in self._sends if start < t < end)
        answered = sum(1 for t in self._successes if start < t < end)
        answered += sum(1 for t in self._throttles if start < t < end)
        return max(0, sent - answered)

    def on_throttle(self, sent_at: float) -> None:
        self._throttles.append(sent_at)
        _forget_before(self._throttles, self._now() - 1.0)
        if self._cut_at is not None and sent_at < self._cut_at:
            return  # it answers a rate already cut
        now = self._now()
        current = self.rate
        if self._quota is None or self._measured_at is None:
            self._first_throttle(now, sent_at, current)
            return
        # The bucket was empty at the last measure and is empty now: what got through in
        # between (counted by when it was sent) is what it refilled, the quota or less.
        start = max(self._measured_at, now - _LOOKBACK)
        span = now - start
        succeeded = self._succeeded_since(start) + self._unanswered(max(start, now - 1.0), sent_at)
        if span < _SETTLE or succeeded < _MIN_EVIDENCE:
            # Too soon, or too little through, to measure: still over the quota (the
            # estimate was high, the quota fell, another client took more). Pause, and
            # measure from the same empty bucket at the next throttle.
            self._tokens = -_PAUSE
            self._stamp = now
            return
        measured = succeeded / span
        # Over a shorter stretch that ends here, what got through is at most what the
        # bucket refilled and what it held at the start (a second's worth at most): after
        # the bucket overflowed below a raised quota, that shows more of it.
        for window in _WINDOWS:
            if window < span:
                through = self._succeeded_since(now - window)
                measured = max(measured, through / (window + _BURST))
        if self._exact and sent_at >= self._probe_at and current > self._quota:
            # A probe got past a measured quota before the bucket ran dry: that does not
            # show it lower (the bucket may have overflowed while this held below it).
            measured = max(measured, self._quota)
        # Far more than the estimate got through: capacity was freed (the quota rose,
        # another client left), and the measure may undercount: probe again soon. A
        # measure over a short span is rough: probe again after twice that span.
        rose = succeeded - self._quota * span > _RISE * self._quota + 2
        self._quota = max(_FLOOR, min(current, measured))
        self._margin = min(_MARGIN_REQUESTS / succeeded, _MAX_MARGIN)
        self._measured_at = now
        self._exact = True
        self._cut(now, _MIN_HOLD if rose else max(_MIN_HOLD, min(self._hold(), _SPAN_HOLD * span)))

    def _first_throttle(self, now: float, sent_at: float, current: float) -> None:
        """The first estimate; the first probe, measuring from this empty bucket, follows."""
        # The bucket was full at the start, assumed to hold a second's worth (as AWS's
        # do); until this request found it empty, it gave that and what it refilled.
        # Nothing was throttled before, so what was sent before this one got through,
        # answered yet or not, and on average half a token was left. Over a shorter
        # stretch ending here, the same is a lower bound (after a pause in sending, the
        # only one that holds): the estimate is the largest.
        # Only the last seconds' sends, as `take` keeps them: a throttle may come with no send
        # in between (answered late), and sends from before a long pause estimate nothing.
        _forget_before(self._sends, now - _WINDOWS[-1] - 1.0)
        since = max(0.0, sent_at - self._active_from)
        estimate = 0.0
        for window in (*_WINDOWS, since):
            sent = sum(1 for t in self._sends if sent_at - window <= t < sent_at)
            estimate = max(estimate, (sent + 0.5) / (_BURST + min(window, since)))
        if sum(1 for t in self._sends if t < sent_at) < _MIN_EVIDENCE:
            # Another client had emptied the bucket: what was known, or the start's rate.
            known = self._quota if self._quota is not None else _INITIAL
            self._quota = max(_FLOOR, min(current, known))
        else:  # the quota, if this has the account to itself; it may not
            self._quota = max(_FLOOR, min(current, estimate))
        self._margin = 0.0
        self._measured_at = now
        self._cut(now, _FIRST_PROBE)

    def _cut(self, now: float, hold: float) -> None:
        self._cut_at = self._stamp = now
        self._probe_at = now + hold
        self._tokens = -_PAUSE

    def _hold(self) -> float:
        """Seconds between a cut and the next probe: a probe costs about one throttle."""
        quota = max(self._quota or 0.0, _HOLD_FLOOR)
        return min(max(_HOLD_REQUESTS / quota, _MIN_HOLD), _MAX_HOLD)


def _forget_before(times: deque[float], cutoff: float) -> None:
    """Drop the oldest entries at or before `cutoff` (a request may outlast the look-back)."""
    while times and times[0] <= cutoff:
        times.popleft()
