"""What the chaos and outage runs share: generated traffic the test can stop, the webhook's view of
what arrived, and the daemon's memory as the kernel reports it.

The emulator's own ``TrafficOptions`` traffic runs for the emulator's whole life; these runs need
to stop the traffic and then wait for quiescence, so they drive the same ``TrafficGenerator``
against the emulator's state from a task group of their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from tcsms_poller.emulator import RunningEmulator, TrafficOptions
from tcsms_poller.emulator.traffic import TrafficGenerator
from tests.support.http_receiver import Received, Receiver

__all__ = [
    "RunningTraffic",
    "Tally",
    "batch_ids",
    "generated_traffic",
    "replayed_batches",
    "rss_kib",
    "settle",
]


class RunningTraffic:
    """Traffic flowing into the emulator until ``stop()`` (or the end of its block)."""

    def __init__(self, generator: TrafficGenerator) -> None:
        self.generator = generator
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        with self._scope:
            await self.generator.run()

    def stop(self) -> None:
        """No record arrives after this returns (the generator's steps are synchronous)."""
        self._scope.cancel()


@asynccontextmanager
async def generated_traffic(
    emulator: RunningEmulator, options: TrafficOptions, *, seed: int
) -> AsyncIterator[RunningTraffic]:
    """Seeded live traffic into ``emulator`` (its history at once) until stopped or left."""
    generator = TrafficGenerator(
        options,
        app_ids=emulator.state.options.app_ids,
        sink=emulator.state,
        seed=seed,
        clock=time.time,
    )
    generator.backfill()
    traffic = RunningTraffic(generator)
    async with anyio.create_task_group() as tg:
        tg.start_soon(traffic.run)
        try:
            yield traffic
        finally:
            traffic.stop()


class Tally:
    """The record ids a webhook accepted so far; each batch is parsed once, however often asked."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.ids: set[str] = set()
        self._counted = 0

    def update(self) -> set[str]:
        """Count the batches accepted since the last call; every id so far."""
        fresh = self.receiver.accepted[self._counted :]  # a copy: the server thread appends
        for request in fresh:
            self.ids.update(batch_ids(request))
        self._counted += len(fresh)
        return self.ids


def batch_ids(request: Received) -> list[str]:
    """The record ids of one ``{"records": [...]}`` batch the HTTP sink posted, in order."""
    return [record["id"] for record in json.loads(request.body)["records"]]


def replayed_batches(segments: Sequence[Sequence[Received]]) -> tuple[int, list[str]]:
    """How many batches a webhook got again as replays, and every repeat that is not one.

    A segment is what one daemon process posted, or what one life of the webhook accepted. The
    drainer sends one batch at a time and commits its cursor after the 2xx, so a kill (or a
    connection cut) can only cost the ack of the last batch before it; the first batch after it
    then starts with exactly those records, in the same order. Any other repeat is a bug.
    """
    seen: set[str] = set()
    previous: list[str] = []
    replays = 0
    problems: list[str] = []
    for number, segment in enumerate(segments):
        for position, request in enumerate(segment):
            ids = batch_ids(request)
            again = [record_id for record_id in ids if record_id in seen]
            if len(set(ids)) != len(ids):
                problems.append(f"segment {number}, batch {position} holds a record twice")
            if again:
                if (
                    position == 0
                    and ids[: len(previous)] == previous
                    and set(again) == set(previous)
                ):
                    replays += 1
                else:
                    problems.append(
                        f"segment {number}, batch {position}: {len(again)} records again, "
                        "not a replay of the last batch before"
                    )
            seen.update(ids)
            previous = ids
    return replays, problems


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


async def settle(
    condition: Callable[[], bool],
    *,
    timeout: float,  # noqa: ASYNC109 (polls another process's output, like e2e's wait_until)
) -> bool:
    """Poll ``condition`` until true or ``timeout``; whether it came true.

    For the last wait of a run, where a timeout should not fail with "no condition" but fall
    through to the assertions, which say precisely what is missing.
    """
    with anyio.move_on_after(timeout):
        while not condition():  # noqa: ASYNC110 (no event to wait on: the files of another process)
            await anyio.sleep(0.05)
        return True
    return False
