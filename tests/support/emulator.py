"""The in-process emulator: its fixtures (a pytest plugin of tests/conftest.py) and helpers to
reach its control endpoints (``/_emulator/...``) and read what it holds.

Fixtures, the same in every folder:

- ``emulator``: an emulator without traffic on a free loopback port, built from
  ``emulator_options`` on ``emulator_clock``; a module or folder overrides either to change it.
- ``api``: raw signed calls to ``emulator`` (``tests.support.emulator_api.Api``).
- ``emulator_per_reading``: an emulator without traffic under each reading of the per-number
  window in turn (a module overrides ``emulator`` with it to run under every reading).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx
import pytest

from tcsms_poller.emulator import (
    EmulatorOptions,
    RunningEmulator,
    WindowOrder,
    WindowTime,
    run_emulator,
)
from tcsms_poller.records import reply_id
from tcsms_poller.tencent.models import ReplyStatus
from tests.support.emulator_api import Api

__all__ = [
    "NUMBER",
    "Reachable",
    "api",
    "control",
    "emulator",
    "emulator_clock",
    "emulator_options",
    "emulator_per_reading",
    "emulator_truth",
    "expected_ids",
    "inject",
    "poll_log",
    "receipts",
    "replies",
    "request_counts",
    "set_faults",
    "truth",
    "truth_reply_id",
]


class Reachable(Protocol):
    """An emulator reachable over HTTP, in this process (``RunningEmulator``) or another."""

    @property
    def url(self) -> str: ...


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """The ``emulator`` fixture's options; a module or folder overrides this to change them."""
    return EmulatorOptions(seed=7)


@pytest.fixture
def emulator_clock() -> Callable[[], float]:
    """The ``emulator`` fixture's wall clock; a module overrides this to skew it."""
    return time.time


@pytest.fixture
async def emulator(
    emulator_options: EmulatorOptions, emulator_clock: Callable[[], float]
) -> AsyncIterator[RunningEmulator]:
    """An emulator without traffic (tests inject exactly what they need) on a free port."""
    async with run_emulator(emulator_options, clock=emulator_clock) as running:
        yield running


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    """Raw signed calls to the test's emulator."""
    async with httpx.AsyncClient() as http:
        yield Api(emulator, http)


@pytest.fixture(
    params=[(time, order) for time in WindowTime for order in WindowOrder],
    ids=lambda reading: f"{reading[0]}-{reading[1]}",
)
async def emulator_per_reading(request: pytest.FixtureRequest) -> AsyncIterator[RunningEmulator]:
    """An emulator without traffic under each reading of the per-number window in turn."""
    time, order = request.param
    options = EmulatorOptions(seed=7, by_number_time=time, by_number_order=order)
    async with run_emulator(options) as running:
        yield running


async def control(emulator: Reachable, path: str, body: Mapping[str, Any] | None = None) -> Any:
    """POST (with ``body``) or GET a control endpoint of the emulator; its JSON answer."""
    async with httpx.AsyncClient() as http:
        url = f"{emulator.url}/_emulator/{path}"
        response = await (http.get(url) if body is None else http.post(url, json=body))
        response.raise_for_status()
        return response.json()


async def set_faults(emulator: RunningEmulator, rules: Sequence[Mapping[str, Any]]) -> None:
    """Replace the emulator's fault rules at runtime (``[]`` turns every fault off)."""
    answer = await control(emulator, "faults", {"faults": list(rules)})
    assert len(answer["faults"]) == len(rules), answer


async def truth(emulator: Reachable) -> dict[str, Any]:
    """``GET /_emulator/truth``: every record the emulator created, and when it handed it out."""
    return dict(await control(emulator, "truth"))


async def poll_log(emulator: Reachable) -> list[tuple[str, float, float]]:
    """``GET /_emulator/polls``: ``(number, arrived, answered)`` of every per-number request
    answered since logging began (``POST /_emulator/polls {"logging": true}``)."""
    answer = await control(emulator, "polls")
    assert answer["logging"], "the emulator is not logging its per-number requests"
    return [(p["phone_number"], p["arrived"], p["answered"]) for p in answer["polls"]]


async def emulator_truth(emulator: RunningEmulator) -> set[str]:
    """The id of every record the emulator has created so far (what a sink must end up with)."""
    return expected_ids(await truth(emulator))


def request_counts(emulator: RunningEmulator, action: str) -> tuple[int, int]:
    """``(requests, ok)`` the emulator has seen for ``action`` so far."""
    stats = emulator.state.stats_snapshot()["actions"].get(action, {})
    return stats.get("requests", 0), stats.get("ok", 0)


def expected_ids(truth: dict[str, Any]) -> set[str]:
    """The record ids the emulator's receipts and replies must arrive under."""
    ids = {status["serial_no"] for status in truth["send_statuses"]}
    ids.update(truth_reply_id(reply) for reply in truth["replies"])
    return ids


def truth_reply_id(reply: dict[str, Any]) -> str:
    """The record id a reply of ``/_emulator/truth`` arrives under."""
    fields = {key: value for key, value in reply.items() if key not in ("app_id", "handed_out_at")}
    return reply_id(reply["app_id"], ReplyStatus(**fields))


# -- records to inject (``POST /_emulator/records``) ----------------------------------------------

NUMBER = "+8613711112222"


async def inject(emulator: Reachable, **records: Any) -> dict[str, Any]:
    """Add exact records to the emulator (not pushed unless ``push=True``); returns them."""
    return dict(await control(emulator, "records", {"push": False, **records}))


def receipts(count: int, *, number: str = NUMBER, at: int | None = None) -> list[dict[str, Any]]:
    """``count`` receipts for ``number``, several sharing each second."""
    start = at or int(time.time()) - 3600
    return [
        {"phone_number": number, "user_receive_time": start + index // 3} for index in range(count)
    ]


def replies(count: int, *, number: str = NUMBER, saying: str = "reply") -> list[dict[str, Any]]:
    """``count`` replies from ``number``; another ``saying`` keeps them apart from earlier ones."""
    start = int(time.time()) - 600
    return [
        {"phone_number": number, "reply_content": f"{saying} {index}", "reply_time": start + index}
        for index in range(count)
    ]
