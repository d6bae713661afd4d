"""Per-number sweeps: the span, splitting full pages, the remembered plan, overfull seconds.

A fake API answers from a list of records under each reading Tencent leaves open (the window on
the send or the receive time, ascending or descending): the sweep must not care.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcsms_poller.tencent.api import BY_NUMBER_LOOKBACK, PAGE_LIMIT
from tcsms_poller.workers.windows import (
    MERGE_BELOW,
    Answered,
    Plan,
    Sweep,
    Window,
    oldest_allowed,
    span_of,
)

NOW = 1_764_000_000.0
EARLY = 10_000.0  # "now" for windows near time 0: all of them within the 7 days
READINGS = [(time, order) for time in ("send", "receive") for order in ("asc", "desc")]


@dataclass(frozen=True)
class FakeApi:
    """Records as (send, receive) times; answers a window like Tencent under one reading."""

    records: list[tuple[int, int]]
    time: str
    order: str

    def key(self, index: int) -> int:
        send, receive = self.records[index]
        return send if self.time == "send" else receive

    def answer(self, window: Window) -> list[int]:
        inside = [i for i in range(len(self.records)) if window.begin <= self.key(i) <= window.end]
        inside.sort(key=self.key, reverse=self.order == "desc")
        return inside[:PAGE_LIMIT]


def sweep_all(api: FakeApi, span: Window, plan: Plan = ()) -> tuple[set[int], Sweep, int]:
    """One sweep against ``api``: the records pulled, the finished sweep, the requests made."""
    sweep = Sweep.start(span, plan)
    pulled: set[int] = set()
    requests = 0
    while (window := sweep.next(span.end)) is not None:  # all of the span is within 7 days
        page = api.answer(window)
        requests += 1
        pulled.update(page)
        sweep.record(window, len(page))
    return pulled, sweep, requests


def test_the_span_reaches_lookback_into_the_past() -> None:
    """A poll covers ``lookback`` until now."""
    assert span_of(now=NOW, lookback=86_400) == Window(int(NOW) - 86_400, int(NOW))


@given(lookback=st.floats(min_value=1, max_value=30 * 86_400))
def test_spans_never_reach_beyond_seven_days(lookback: float) -> None:
    """Whatever the lookback, BeginTime stays inside the API's 7 days."""
    span = span_of(now=NOW, lookback=lookback)
    assert span.begin > int(NOW) - BY_NUMBER_LOOKBACK
    assert span.end == int(NOW)


def test_a_window_aged_past_seven_days_during_a_sweep_is_cut_to_what_the_api_accepts() -> None:
    """A sweep slowed down by the rate limit never sends a BeginTime the API refuses."""
    sweep = Sweep.start(span_of(now=NOW, lookback=BY_NUMBER_LOOKBACK))
    later = NOW + 3600
    window = sweep.next(later)
    assert window is not None
    assert window.begin == oldest_allowed(later)


def test_a_window_entirely_past_seven_days_is_not_asked() -> None:
    """Seconds that aged out while the sweep waited cannot be pulled: they are skipped."""
    sweep = Sweep.start(Window(int(NOW) - BY_NUMBER_LOOKBACK, int(NOW) - BY_NUMBER_LOOKBACK + 10))
    assert sweep.next(NOW) is None


def test_a_short_page_ends_the_sweep() -> None:
    """Fewer than 100 records: one request, nothing more to ask."""
    sweep = Sweep.start(Window(0, 1000))
    window = sweep.next(EARLY)
    assert window == Window(0, 1000)
    sweep.record(window, PAGE_LIMIT - 1)
    assert sweep.next(EARLY) is None
    assert sweep.finished_plan() == ()


def test_a_full_page_splits_its_window_in_halves_earlier_first() -> None:
    """A full page is followed by its window's two halves, which together are the window."""
    sweep = Sweep.start(Window(0, 1001))
    window = sweep.next(EARLY)
    assert window == Window(0, 1001)
    sweep.record(window, PAGE_LIMIT)
    assert sweep.next(EARLY) == Window(0, 500)
    assert sweep.next(EARLY) == Window(501, 1001)


def test_an_overfull_second_is_reported_by_the_sweep_that_finds_it_not_the_next() -> None:
    """A second known to be overfull from the last plan is asked again but not reported."""
    sweep = Sweep.start(Window(0, 1))
    for count in (PAGE_LIMIT, PAGE_LIMIT, 5):
        window = sweep.next(EARLY)
        assert window is not None
        sweep.record(window, count)
    assert sweep.overfull == sweep.unreachable == [Window(0, 0)]
    again = Sweep.start(Window(0, 2), sweep.finished_plan())
    while (window := again.next(EARLY)) is not None:
        again.record(window, PAGE_LIMIT if window == Window(0, 0) else 5)
    assert again.unreachable == [Window(0, 0)]
    assert again.overfull == []


def test_a_full_one_second_window_is_reported_overfull_and_the_sweep_ends() -> None:
    """One second cannot be split: the window is reported, not asked again."""
    sweep = Sweep.start(Window(7, 7))
    window = sweep.next(EARLY)
    assert window == Window(7, 7)
    sweep.record(window, PAGE_LIMIT)
    assert sweep.next(EARLY) is None
    assert sweep.overfull == [Window(7, 7)]


@pytest.mark.parametrize(("time", "order"), READINGS)
def test_records_sharing_seconds_across_the_page_boundary_are_all_pulled(
    time: str, order: str
) -> None:
    """250 records with 40 in one second at either page boundary: every one, in any reading."""
    times = [1000 + i for i in range(80)] + [1090] * 40 + [1100 + i for i in range(130)]
    times[130:170] = [1140] * 40
    api = FakeApi([(t - 5, t) for t in times], time, order)
    pulled, sweep, _ = sweep_all(api, Window(0, 2000))
    assert pulled == set(range(250))
    assert not sweep.overfull


def test_a_number_with_few_records_costs_one_request() -> None:
    """Fewer than 100 records in the span: one request a poll."""
    api = FakeApi([(t, t + 2) for t in range(0, 9900, 100)], "receive", "asc")
    _, sweep, requests = sweep_all(api, Window(0, 10_000))
    assert requests == 1
    _, _, again = sweep_all(api, Window(0, 10_000), sweep.finished_plan())
    assert again == 1


def test_the_plan_of_a_busy_number_saves_requests_on_its_next_poll() -> None:
    """250 records spread over the span: the second poll asks the windows the first ended with."""
    api = FakeApi([(t, t + 3) for t in range(0, 10_000, 40)], "send", "desc")
    pulled, sweep, first = sweep_all(api, Window(0, 10_000))
    assert pulled == set(range(250))
    plan = sweep.finished_plan()
    pulled, _, second = sweep_all(api, Window(60, 10_060), plan)
    assert pulled == {i for i in range(250) if api.key(i) >= 60}
    assert second == len(plan) < first


def test_a_plan_merges_neighbours_that_held_little() -> None:
    """Neighbours are asked together while they held fewer than MERGE_BELOW; the rest of the
    span (before and after the plan) joins the first and last window."""
    plan = (
        Answered(Window(0, 99), 0),
        Answered(Window(100, 199), 10),
        Answered(Window(200, 299), MERGE_BELOW - 10),
        Answered(Window(300, 399), 5),
        Answered(Window(400, 449), 80),
    )
    sweep = Sweep.start(Window(50, 500), plan)
    windows = [sweep.next(EARLY) for _ in range(4)]
    assert windows == [Window(50, 199), Window(200, 399), Window(400, 500), None]


def test_a_plan_that_held_fewer_than_a_page_in_all_is_one_window_again() -> None:
    """A number whose records fell below a page (old ones left the span) is one request again."""
    plan = (Answered(Window(0, 99), 45), Answered(Window(100, 199), 45))
    sweep = Sweep.start(Window(50, 500), plan)
    assert [sweep.next(EARLY), sweep.next(EARLY)] == [Window(50, 500), None]


@st.composite
def record_times(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Up to 700 (send, receive) pairs: send times spread out or piled on a few seconds (ties,
    and seconds holding more than a page), each receipt seconds or up to 40 minutes later."""
    count = draw(st.integers(0, 700))
    piles = draw(st.lists(st.integers(0, 3_000), max_size=3))
    piled, late = draw(st.sampled_from([0.0, 0.3, 0.9])), draw(st.floats(0, 0.5))
    rng = random.Random(draw(st.integers(0, 2**32)))
    records = []
    for _ in range(count):
        send = rng.choice(piles) if piles and rng.random() < piled else rng.randrange(3_001)
        delay = rng.randrange(600, 2_401) if rng.random() < late else rng.randrange(6)
        records.append((send, send + delay))
    return records


def assert_complete(api: FakeApi, span: Window, plan: Plan = ()) -> Sweep:
    """A sweep pulls every record of the span but those of overfull seconds; return it."""
    pulled, sweep, requests = sweep_all(api, span, plan)
    expected = {i for i in range(len(api.records)) if span.begin <= api.key(i) <= span.end}
    assert pulled <= expected
    assert {api.key(i) for i in expected - pulled} <= {w.begin for w in sweep.unreachable}
    for window in sweep.unreachable:
        assert sum(api.key(i) == window.begin for i in expected) >= PAGE_LIMIT
    assert requests <= len(plan) + 2 * 13 * (len(expected) // PAGE_LIMIT + 1)  # 2**12 > 3600
    return sweep


@given(
    records=record_times(),
    reading=st.sampled_from(READINGS),
    begin=st.integers(0, 1_500),
    added=record_times(),
)
def test_every_record_in_the_span_is_pulled_under_every_reading(
    records: list[tuple[int, int]],
    reading: tuple[str, str],
    begin: int,
    added: list[tuple[int, int]],
) -> None:
    """A sweep, and the next one from its plan, pull all of the span but overfull seconds."""
    span = Window(begin, 3_600)
    sweep = assert_complete(FakeApi(records, *reading), span)
    later = Window(begin + 60, 3_660)  # records arrived and time went on before the next poll
    assert_complete(FakeApi(records + added, *reading), later, sweep.finished_plan())


@given(
    cuts=st.lists(st.integers(1, 999), unique=True, max_size=30).map(sorted),
    counts=st.lists(st.integers(0, PAGE_LIMIT), min_size=31, max_size=31),
    begin=st.integers(-200, 1200),
    length=st.integers(0, 1500),
)
def test_the_first_windows_of_any_plan_partition_the_span(
    cuts: list[int], counts: list[int], begin: int, length: int
) -> None:
    """Whatever the last plan held and however the span moved, the windows a sweep starts
    with cover the span exactly, each second once, in order."""
    bounds = [0, *cuts, 1000]
    plan = tuple(
        Answered(Window(low, high - 1), count)
        for low, high, count in zip(bounds, bounds[1:], counts, strict=False)
    )
    span = Window(begin, begin + length)
    sweep = Sweep.start(span, plan)
    windows = []
    while (window := sweep.next(EARLY)) is not None:
        windows.append(window)
        sweep.record(window, 0)
    assert windows[0].begin == span.begin
    assert windows[-1].end == span.end
    assert all(w.begin <= w.end for w in windows)
    assert all(a.end + 1 == b.begin for a, b in itertools.pairwise(windows))
