"""Records and clocks for tests of the state and the sinks."""

from __future__ import annotations

import anyio.lowlevel

from tcsms_poller.records import Record

__all__ = ["FakeClock", "record", "records"]


class FakeClock:
    """Time (wall or monotonic) that only the test or ``sleep`` moves; every sleep is remembered."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def record(record_id: str) -> Record:
    """A conversion record with the given id (the smallest valid kind)."""
    return Record(
        kind="conversion",
        id=record_id,
        app_id="1400006666",
        source="ReportConversion",
        received_at="2026-11-25T08:00:00.000Z",
        fields={"serial_no": record_id, "conversion_time": None, "code": "ok", "message": ""},
    )


def records(*ids: str) -> list[Record]:
    """One record per id, in order."""
    return [record(i) for i in ids]
