"""Waiting on state another task or process exposes no event for: polls with a deadline."""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["settle", "wait_until"]


async def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 60.0,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """Poll ``condition`` (cheap, observable state) until true, failing after ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout}s") from None


async def settle(
    condition: Callable[[], bool],
    *,
    timeout: float,
) -> bool:
    """Poll ``condition`` until true or ``timeout``; whether it came true.

    For the last wait of a run, where a timeout should not fail with "no condition" but fall
    through to the assertions, which say precisely what is missing.
    """
    with anyio.move_on_after(timeout):
        while not condition():  # no event to wait on: the files of another process
            await anyio.sleep(0.05)
        return True
    return False
