"""The outbox's head as one process sees it, for both backends' ``Outbox``: the seq of the newest
record committed, and a wait for a newer one that the sink drainers block on."""

from __future__ import annotations

import anyio

__all__ = ["CommitHead"]


class CommitHead:
    """The seq of the newest committed record (``seq``), advanced by commits, which wake the
    waiters."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._committed = anyio.Event()

    def advance(self, seq: int) -> None:
        """A commit reached ``seq``: the head moves and the waiters wake, unless a newer commit
        returned first (commits may return in any order)."""
        if seq > self.seq:
            self.seq = seq
            self._committed.set()
            self._committed = anyio.Event()

    async def wait_past(self, after: int) -> None:
        """Return once the head is past ``after`` (at once if it is)."""
        while self.seq <= after:
            await self._committed.wait()
