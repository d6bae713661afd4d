"""The worker's ticker on a fake clock: a fixed schedule, jitter that does not accumulate."""

from __future__ import annotations

import random

import pytest

from tcsms_poller.workers.base import NextCycle, Ticker
from tests.support.records import FakeClock


def test_work_and_late_wake_ups_do_not_shift_the_schedule() -> None:
    """Cycles of 0.5 s woken 50 ms late still start on the 2 s grid, after 100 of them."""
    clock = FakeClock(1_000.0)
    ticker = Ticker(2.0, jitter=0.0, clock=clock)
    first = clock.now
    for cycle in range(100):
        ticker.start()
        assert abs(clock.now - (first + 2.0 * cycle)) <= 0.05 + 1e-9
        clock.now += 0.5  # the work
        clock.now += ticker.remaining() + 0.05  # the sleep, and a late wake-up


def test_jitter_stays_within_ten_percent_and_never_accumulates() -> None:
    """Each start is within ±10 % of its tick, however many ticks have passed."""
    clock = FakeClock(1_000.0)
    ticker = Ticker(10.0, clock=clock, rng=random.Random(1))
    first = clock.now
    offsets = []
    for cycle in range(500):
        ticker.start()
        offsets.append(clock.now - (first + 10.0 * cycle))
        clock.now += ticker.remaining()
    assert max(abs(offset) for offset in offsets) <= 1.0 + 1e-9
    assert abs(sum(offsets) / len(offsets)) < 0.1  # centred on the grid: no drift


def test_an_overrun_starts_at_once_and_re_anchors() -> None:
    """A cycle longer than the interval is followed at once, then every interval from there."""
    clock = FakeClock(1_000.0)
    ticker = Ticker(2.0, jitter=0.0, clock=clock)
    ticker.start()
    clock.now += 5.0  # missed two ticks
    assert ticker.remaining() == 0.0
    ticker.start()
    restart = clock.now
    clock.now += 0.1
    assert ticker.remaining() == pytest.approx(1.9)
    clock.now = restart + 2.0
    ticker.start()
    assert ticker.remaining() == 2.0


def test_the_first_cycle_starts_at_once() -> None:
    """Nothing to wait for before the first start."""
    assert Ticker(60.0).remaining() == 0.0


def test_a_cycle_waits_for_its_schedule_unless_more_is_due_or_a_wait_is_named() -> None:
    assert NextCycle().pause(7.5) == 7.5
    assert NextCycle(more_due=True).pause(7.5) == 0.0
    assert NextCycle(wait=60.0).pause(7.5) == 60.0
