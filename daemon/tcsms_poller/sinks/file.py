"""Appends records to a file as JSON Lines, exactly once across crashes.

Example::

    sinks:
      - type: file
        path: /var/lib/tcsms-poller/records.jsonl
        fsync: batch           # batch: fsync before each ack; never: leave it to the OS
        batch_size: 500

The byte offset after each batch is committed with the sink's cursor. On start the file is
truncated back to the committed offset and the outbox replays from the cursor, so a crash between
the write and the commit leaves no duplicate and loses nothing. SIGHUP reopens the file, which is
what logrotate's ``create`` mode needs (with ``copytruncate`` the offset would be wrong: don't).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from tcsms_poller.sinks.base import Ack, OutboxRecord, SinkContext, SinkSettings

__all__ = ["FileSink"]


class FileSettings(SinkSettings):
    """Where to write and how hard to insist on durability."""

    type: Literal["file"] = "file"
    path: Path
    fsync: Literal["batch", "never"] = "batch"


class FileSink:
    """JSON Lines appended to ``path``; see the module docstring."""

    Config: ClassVar[type[SinkSettings]] = FileSettings

    def __init__(self, config: FileSettings, context: SinkContext) -> None:
        self._config = config
        self._context = context

    async def open(self) -> None:
        raise NotImplementedError

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        raise NotImplementedError

    async def reopen(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError
