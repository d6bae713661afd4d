"""A tcsms-poller sink that appends every record to a JSON Lines file of its own.

Example::

    sinks:
      - type: mysink
        path: /var/lib/tcsms-poller/mysink.jsonl
        batch_size: 200        # the options every sink has work here too
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import BinaryIO, ClassVar, Literal

import anyio.to_thread
from pydantic import Field

from tcsms_poller.settings_types import ConfigPath
from tcsms_poller.sinks.base import (
    Ack,
    OutboxRecord,
    RetryableSinkError,
    SinkContext,
    SinkSettings,
)

__all__ = ["MySink", "MySinkSettings"]


class MySinkSettings(SinkSettings):
    """The options of ``type: mysink``, beside the common ones (name, batch_size, retries)."""

    type: Literal["mysink"] = "mysink"
    # ConfigPath: a relative path is relative to the configuration file, as for built-in sinks.
    path: ConfigPath = Field(description="the JSON Lines file to append to")


class MySink:
    """Appends each batch to ``path`` and acknowledges it once it is on disk."""

    Config: ClassVar[type[SinkSettings]] = MySinkSettings

    def __init__(self, config: MySinkSettings, context: SinkContext) -> None:
        self._config = config
        self._context = context  # its name, the state directory, the last committed position
        self._file: BinaryIO | None = None

    async def open(self) -> None:
        """Called once before the first send; an error here stops the daemon's start."""
        # Blocking calls go to a worker thread: one event loop serves every sink and poller.
        self._file = await anyio.to_thread.run_sync(self._open_file)

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        """Deliver the whole batch, or raise: then the same batch comes again, after a backoff."""
        # Each record is compact UTF-8 JSON already; write the bytes as they are.
        payload = b"".join(record.data + b"\n" for record in batch)
        try:
            await anyio.to_thread.run_sync(self._write, payload)
        except OSError as error:
            raise RetryableSinkError(f"cannot write {self._config.path}: {error}") from None
        return Ack()  # durable: the daemon may now forget these records

    async def reopen(self) -> None:
        """SIGHUP: let logrotate move the file away; write to a new one at the same path."""
        await self.aclose()
        await self.open()

    async def aclose(self) -> None:
        """Called once, after the last send."""
        if self._file is not None:
            file, self._file = self._file, None
            await anyio.to_thread.run_sync(file.close)

    def _open_file(self) -> BinaryIO:
        self._config.path.parent.mkdir(parents=True, exist_ok=True)
        return self._config.path.open("ab")

    def _write(self, payload: bytes) -> None:
        assert self._file is not None, "send() before open()"
        self._file.write(payload)
        self._file.flush()
        os.fsync(self._file.fileno())
