"""Writes records to standard output as JSON Lines.

Example::

    sinks:
      - type: stdout
        batch_size: 500        # records per write

When a stdout sink is configured, the daemon's own logs go to stderr, so stdout carries records
only and can be piped straight into ``jq`` or another program.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import BinaryIO, ClassVar, Literal

import anyio.to_thread

from tcsms_poller.sinks.base import Ack, OutboxRecord, SinkContext, SinkSettings

__all__ = ["StdoutSink"]


class StdoutSettings(SinkSettings):
    """The stdout sink has no options beyond the common ones."""

    type: Literal["stdout"] = "stdout"


class StdoutSink:
    """JSON Lines on stdout; a write is acknowledged once flushed to the pipe or terminal."""

    Config: ClassVar[type[SinkSettings]] = StdoutSettings

    def __init__(self, config: StdoutSettings, context: SinkContext) -> None:
        self._config = config
        self._context = context
        self._stream: BinaryIO = sys.stdout.buffer

    async def open(self) -> None:
        """Nothing to open: stdout is already there."""

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        payload = b"".join(record.data + b"\n" for record in batch)
        # A slow reader on the pipe must block this sink only, never the event loop.
        await anyio.to_thread.run_sync(self._write, payload)
        return Ack()

    def _write(self, payload: bytes) -> None:
        self._stream.write(payload)
        self._stream.flush()

    async def reopen(self) -> None:
        """Nothing to reopen."""

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._stream.flush)
