"""The dead-letter file: where a batch goes when its sink refuses it for good.

One JSON object per line: ``{"dead_lettered_at", "sink", "reason", "record"}``, ``record`` being
the exact record the sink would have received. The file is fsynced before the outbox forgets the
batch, so giving up on a sink never loses a record silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread

from tcsms_poller.permissions import SHARED, SHARED_DIRECTORY, make_dirs, restrict
from tcsms_poller.records import format_received_at
from tcsms_poller.sinks.base import OutboxRecord

__all__ = ["DeadLetterFile"]


class DeadLetterFile:
    """Appends dead-lettered batches of one sink to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(
        self, batch: Sequence[OutboxRecord], *, sink: str, reason: str, now: float
    ) -> None:
        """Append every record of ``batch`` with the reason, durably."""
        prefix = (
            '{"dead_lettered_at":'
            + json.dumps(format_received_at(now))
            + ',"sink":'
            + json.dumps(sink)
            + ',"reason":'
            + json.dumps(reason, ensure_ascii=False)
            + ',"record":'
        ).encode("utf-8")
        payload = b"".join(prefix + record.data + b"}\n" for record in batch)
        await anyio.to_thread.run_sync(self._append, payload)

    def _append(self, payload: bytes) -> None:
        make_dirs(self.path.parent, SHARED_DIRECTORY)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, SHARED)
        with open(fd, "ab") as file:
            restrict(fd, SHARED)  # records carry phone numbers: never world-readable
            file.write(payload)
            file.flush()
            os.fsync(fd)
