"""Per-number windows and paging: the 7-day bound, the overlap, continuation, stuck seconds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcsms_poller.workers.windows import (
    API_WINDOW,
    OVERLAP,
    PAGE_LIMIT,
    Window,
    first_window,
    next_window,
)

NOW = 1_764_000_000.0


def test_a_new_number_looks_back_by_lookback() -> None:
    """Without a cursor the first window reaches ``lookback`` into the past."""
    assert first_window(cursor=None, now=NOW, lookback=86_400) == Window(
        int(NOW) - 86_400, int(NOW)
    )


def test_a_known_number_starts_shortly_before_its_cursor() -> None:
    """With a cursor the window re-reads the overlap, where late receipts land."""
    window = first_window(cursor=int(NOW) - 50, now=NOW, lookback=86_400)
    assert window.begin == int(NOW) - 50 - OVERLAP


@given(
    cursor=st.one_of(st.none(), st.integers(min_value=0, max_value=int(NOW))),
    lookback=st.floats(min_value=1, max_value=30 * 86_400),
)
def test_windows_never_reach_beyond_seven_days(cursor: int | None, lookback: float) -> None:
    """Whatever the cursor and lookback, BeginTime stays inside the API's 7 days."""
    window = first_window(cursor=cursor, now=NOW, lookback=lookback)
    assert window.begin > int(NOW) - API_WINDOW
    assert window.end == int(NOW)


def test_a_short_page_ends_the_window() -> None:
    """Fewer than 100 records: nothing more to fetch."""
    assert next_window(Window(0, 1000), [5, 6, 7]) is None


def test_a_full_page_continues_from_its_last_second() -> None:
    """A full page continues at its last timestamp (shared seconds come again, deduped)."""
    times = list(range(100, 100 + PAGE_LIMIT))
    assert next_window(Window(0, 1000), times) == Window(199, 1000)


def test_a_full_page_in_one_second_steps_past_it() -> None:
    """With Offset fixed at 0, a page that is all one second can only be stepped over."""
    assert next_window(Window(0, 1000), [500] * PAGE_LIMIT) == Window(501, 1000)


def test_paging_stops_at_the_window_end() -> None:
    """A continuation never starts after the window's end."""
    assert next_window(Window(0, 500), [500] * PAGE_LIMIT) is None


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=2_000))
def test_paging_terminates_and_always_advances(times: list[int]) -> None:
    """Simulated paging over any record times terminates and never goes backwards."""
    ordered = sorted(times)
    window: Window | None = Window(0, 10_000)
    pages = 0
    while window is not None:
        page = [t for t in ordered if window.begin <= t <= window.end][:PAGE_LIMIT]
        following = next_window(window, page)
        assert following is None or following.begin > window.begin
        window = following
        pages += 1
        assert pages <= len(ordered) + 1
