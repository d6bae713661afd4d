"""Writes records to standard output as JSON Lines.

Example::

    sinks:
      - type: stdout
        format: json           # json: JSON Lines; pretty: a short line each; auto: pretty on a TTY
        batch_size: 500        # records per write

When a stdout sink is configured, the daemon's own logs go to stderr, so stdout carries records
only and can be piped straight into ``jq`` or another program. Once the reader of the pipe has
gone, batches are dead-lettered at once instead of retried (the pipe never comes back).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import BinaryIO, ClassVar, Literal

import anyio.to_thread

from tcsms_poller.sinks.base import (
    Ack,
    OutboxRecord,
    RejectedBatchError,
    SinkContext,
    SinkSettings,
)

__all__ = ["StdoutSink"]


class StdoutSettings(SinkSettings):
    """JSON Lines for programs, or short lines for people watching a terminal."""

    type: Literal["stdout"] = "stdout"
    format: Literal["json", "pretty", "auto"] = "json"


_SUMMARIES = {
    "send_status": ("phone_number", "report_status", "description", "serial_no"),
    "reply": ("phone_number", "reply_content", "sign_name"),
    "callback_statistics": ("begin_time", "end_time", "callback_count", "callback_success_count"),
    "conversion": ("serial_no", "code", "message"),
}


def render_pretty(record: OutboxRecord) -> bytes:
    """``HH:MM:SS  kind  app  the record's telling fields`` on one line."""
    data = record.as_dict()
    kind = str(data.get("kind", "?"))
    fields = "  ".join(str(data.get(key)) for key in _SUMMARIES.get(kind, ("id",)))
    received = str(data.get("received_at", ""))[11:19]
    return f"{received}  {kind:<19} {data.get('app_id', '')}  {fields}\n".encode()


def _json_line(record: OutboxRecord) -> bytes:
    return record.data + b"\n"


class StdoutSink:
    """JSON Lines on stdout; a write is acknowledged once flushed to the pipe or terminal."""

    Config: ClassVar[type[SinkSettings]] = StdoutSettings

    def __init__(self, config: StdoutSettings, context: SinkContext) -> None:
        self._config = config
        self._context = context
        self._stream: BinaryIO = sys.stdout.buffer
        pretty = config.format == "pretty" or (config.format == "auto" and sys.stdout.isatty())
        self._render = render_pretty if pretty else _json_line

    async def open(self) -> None:
        """Nothing to open: stdout is already there."""

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        payload = b"".join(map(self._render, batch))
        try:
            # A slow reader on the pipe must block this sink only, never the event loop.
            await anyio.to_thread.run_sync(self._write, payload)
        except BrokenPipeError:
            # The reader has gone (``| head``) and this process's stdout never comes back:
            # retrying would only hold the outbox. Dead-letter, to replay after a restart.
            raise RejectedBatchError("stdout was closed by its reader") from None
        return Ack()

    def _write(self, payload: bytes) -> None:
        self._stream.write(payload)
        self._stream.flush()

    async def reopen(self) -> None:
        """Nothing to reopen."""

    async def aclose(self) -> None:
        with suppress(BrokenPipeError):
            await anyio.to_thread.run_sync(self._stream.flush)
