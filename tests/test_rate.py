"""The rate controller against a simulated token-bucket service, on a virtual clock.

Deterministic: no wall time is measured, so these hold on a loaded machine too.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omics_batch_runs import AdaptiveRate
from omics_batch_runs.rate import _FLOOR


class Clock:
    """A virtual clock: what the controller reads is what the simulation sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcome:
    elapsed: float
    ideal: float
    throttled: int
    sent: int


def simulate(
    quota: float,
    burst: float,
    latency: float,
    concurrency: int,
    pages: int,
    *,
    max_rps: float | None = None,
    quota_later: tuple[float, float] | None = None,
    rate: AdaptiveRate | None = None,
    start: float = 0.0,
    clock: Clock | None = None,
) -> Outcome:
    """`concurrency` workers send through one AdaptiveRate to a token-bucket service.

    Pass `rate` with the `clock` it reads to go on with a controller already used."""
    clock = clock if clock is not None else Clock()
    now = clock.now = start
    rate = rate if rate is not None else AdaptiveRate(max_rps, clock=clock)
    tokens, stamp = burst, start
    rng = random.Random(1)
    done = throttled = sent = 0
    waiting: deque[int] = deque(range(concurrency))
    events: list[tuple[float, int, str, float]] = [(start, -1, "tick", start)]
    ticking = True
    while done < pages:
        now, worker, kind, sent_at = heapq.heappop(events)
        clock.now = now
        if quota_later and now >= quota_later[0]:
            quota = quota_later[1]
        if kind == "tick":
            ticking = False
            while waiting:
                wait = rate.take()
                if wait > 0:
                    heapq.heappush(events, (now + min(wait, 0.05), -1, "tick", 0.0))
                    ticking = True
                    break
                sent += 1
                tokens, stamp = min(burst, tokens + (now - stamp) * quota), now
                ok = tokens >= 1
                tokens -= ok
                back = now + latency * rng.uniform(0.8, 1.2)
                heapq.heappush(events, (back, waiting.popleft(), "ok" if ok else "429", now))
        elif kind == "ok":
            rate.on_success(sent_at)
            done += 1
            waiting.append(worker)
        else:
            throttled += 1
            rate.on_throttle(sent_at)
            waiting.append(worker)
        if waiting and not ticking:
            heapq.heappush(events, (now, -1, "tick", 0.0))
            ticking = True
    limit = quota if max_rps is None else min(quota, max_rps)
    return Outcome(now - start, (pages - burst) / limit, throttled, sent)


@pytest.mark.parametrize(("quota", "burst"), [(10, 10), (20, 20), (5, 5), (100, 100)])
def test_finds_and_holds_the_quota(quota: float, burst: float) -> None:
    out = simulate(quota, burst, latency=0.03, concurrency=16, pages=int(quota * 60))
    assert out.ideal / out.elapsed >= 0.95
    assert out.throttled / out.sent <= 0.08


def test_quota_bound_target_of_the_benchmark() -> None:
    out = simulate(10, 10, latency=0.03, concurrency=16, pages=600)
    assert out.ideal / out.elapsed >= 0.95
    assert out.throttled / out.sent <= 0.05


def test_max_rps_caps_and_is_never_throttled() -> None:
    out = simulate(10, 10, latency=0.03, concurrency=16, pages=400, max_rps=8)
    assert out.throttled == 0
    assert out.elapsed == pytest.approx(400 / 8, rel=0.03)


def test_recovers_when_the_quota_rises() -> None:
    out = simulate(10, 10, latency=0.03, concurrency=16, pages=1600, quota_later=(20.0, 40.0))
    # 200 pages in the first 20 s; at 40/s the other 1400 take 35 s more. Finding a quota
    # four times higher costs cubic growth from the last cut: under 20 s of lost time.
    assert out.elapsed < 20 + 35 + 20


def test_starts_at_ten_per_second_ten_at_once_and_doubles_until_throttled() -> None:
    t = 0.0
    rate = AdaptiveRate(clock=lambda: t)
    assert [rate.take() for _ in range(10)] == [0.0] * 10
    assert rate.rate == 10.0
    assert rate.take() == pytest.approx(0.1)
    t = 0.1
    assert rate.rate == pytest.approx(10.0 * 2**4)
    t = 0.5
    assert rate.rate == 100_000.0  # the ceiling: 10 * 2**20 would be past any quota


def test_a_cap_holds_from_the_first_second() -> None:
    t = 0.0
    rate = AdaptiveRate(max_rps=1, clock=lambda: t)
    assert rate.take() == 0.0  # one at once, not the ten of the uncapped start
    assert rate.take() == pytest.approx(1.0)


def test_throttles_of_requests_sent_before_a_cut_are_ignored() -> None:
    t = 0.0
    rate = AdaptiveRate(clock=lambda: t)
    for i in range(30):
        t = i * 0.05
        rate.on_success(t)
    t = 1.5
    rate.on_throttle(sent_at=1.49)
    after_first = rate.rate
    rate.on_throttle(sent_at=1.4)  # answered the old rate: no second cut
    assert rate.rate == after_first


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["take", "success", "throttle", "clock"]),
        st.floats(-120.0, 900.0),  # how far the clock moves first: back, a little, minutes
        st.floats(-1.0, 600.0),  # how long before now the request was sent
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS, max_rps=st.one_of(st.none(), st.floats(0.1, 50.0)))
def test_no_sequence_of_events_makes_it_raise_or_leave_its_bounds(
    events: list[tuple[str, float, float]], max_rps: float | None
) -> None:
    clock = Clock()
    clock.now = 1000.0
    rate = AdaptiveRate(max_rps, clock=clock)
    for kind, step, age in events:
        clock.now += step
        if kind == "take":
            wait = rate.take()
            assert 0.0 <= wait < math.inf
        elif kind == "success":
            rate.on_success(clock.now - age)
        elif kind == "throttle":
            rate.on_throttle(clock.now - age)
        low = _FLOOR if max_rps is None else min(_FLOOR, max_rps)
        assert low <= rate.rate <= (max_rps or math.inf)
        assert math.isfinite(rate.rate)
    # Whatever happened, it still finds a quota (10/s, 40 s of pages), then holds it.
    limit = 10.0 if max_rps is None else min(10.0, max_rps)
    pages = max(40, int(limit * 40))
    for _ in range(2):
        out = simulate(10, 10, 0.03, 16, pages, rate=rate, clock=clock, start=clock.now)
    if max_rps is None or max_rps > 10:
        assert out.ideal / out.elapsed >= 0.9
    else:  # capped below the quota: never throttled, and held at the cap
        assert out.throttled == 0
        assert out.elapsed == pytest.approx(pages / max_rps, rel=0.05)
