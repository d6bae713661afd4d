"""Appends records to a file as JSON Lines, exactly once across crashes.

Example::

    sinks:
      - type: file
        path: /var/lib/tcsms-poller/records.jsonl
        fsync: batch           # batch: fsync before each ack; never: leave it to the OS
        batch_size: 500

The byte offset after each batch is committed with the sink's cursor, as the position
``{"offset", "inode", "device"}``. On start the file is truncated back to the committed offset
and the outbox replays from the cursor, so a crash between the write and the commit leaves no
duplicate and loses nothing. A file that is not the one the position names (rotated away while the
daemon was down) is appended to as it is. SIGHUP reopens the path, which is what logrotate's
``create`` mode needs (with ``copytruncate`` the offset would be wrong: don't).

Missing parent directories are created; a path that cannot be opened (a directory, a parent that
is a file, no permission) fails at start with a message naming the path. A failed write (a full
disk, an I/O error) is cut off again before the batch is retried, so no torn line remains. A file
deleted while open (its directory removed, say) is noticed before the next batch, which goes to
a new file created at the path, never into the deleted one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeGuard

import anyio.to_thread
import structlog

from tcsms_poller.permissions import SHARED, SHARED_DIRECTORY, make_dirs, restrict
from tcsms_poller.settings_types import ConfigPath
from tcsms_poller.sinks.base import (
    Ack,
    OutboxRecord,
    RetryableSinkError,
    SinkContext,
    SinkSettings,
)

__all__ = ["FilePosition", "FileSettings", "FileSink"]

log = structlog.get_logger("tcsms_poller.sinks")

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC


class FileSettings(SinkSettings):
    """Where to write and how hard to insist on durability."""

    type: Literal["file"] = "file"
    path: ConfigPath
    fsync: Literal["batch", "never"] = "batch"


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Which file (inode and device) and how far into it every acknowledged record reaches."""

    offset: int
    inode: int
    device: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> FilePosition | None:
        """The position from a committed ``Ack.position``; None if absent or not ours."""
        if raw is None:
            return None
        offset, inode, device = (raw.get(key) for key in ("offset", "inode", "device"))
        if not (_is_count(offset) and _is_count(inode) and _is_count(device)):
            log.warning("sink.file_position_ignored", position=dict(raw))
            return None
        return cls(offset=offset, inode=inode, device=device)

    def as_dict(self) -> dict[str, int]:
        """The shape committed with the cursor."""
        return {"offset": self.offset, "inode": self.inode, "device": self.device}


class FileSink:
    """JSON Lines appended to ``path``; see the module docstring.

    Every file operation runs in a worker thread; the drainer never calls two methods at once,
    so the state below needs no lock.
    """

    Config: ClassVar[type[SinkSettings]] = FileSettings

    def __init__(self, config: FileSettings, context: SinkContext) -> None:
        self._config = config
        self._name = context.name
        self._path: Path = config.path
        self._fd: int | None = None
        # What the last acknowledged (or, at start, the last committed) batch reaches.
        self._position = FilePosition.parse(context.position)
        # A write failed and could not be cut off yet: cut it off before the next one.
        self._torn = False

    async def open(self) -> None:
        """Open the file and truncate it back to the committed position (see the docstring)."""
        await anyio.to_thread.run_sync(self._open)

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        payload = b"".join(record.data + b"\n" for record in batch)
        position = await anyio.to_thread.run_sync(self._append, payload)
        return Ack(position=position.as_dict())

    async def reopen(self) -> None:
        """Close and open the path again (after logrotate moved the file away)."""
        await anyio.to_thread.run_sync(self._reopen)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    # -- blocking parts, run in worker threads ----------------------------------------------------

    def _open(self) -> None:
        try:
            fd, created = _open_or_create(self._path)
        except OSError as error:
            raise OSError(
                f"file sink {self._name!r}: cannot open {self._path}: {_reason(error)}"
            ) from error
        try:
            info = os.fstat(fd)
            offset = self._resume_offset(fd, info)
            if created and self._config.fsync == "batch":
                _fsync_directory(self._path.parent)  # so the new name survives a crash too
        except OSError as error:
            os.close(fd)
            raise OSError(
                f"file sink {self._name!r}: cannot prepare {self._path}: {_reason(error)}"
            ) from error
        self._fd = fd
        self._torn = False
        self._position = FilePosition(offset=offset, inode=info.st_ino, device=info.st_dev)

    def _resume_offset(self, fd: int, info: os.stat_result) -> int:
        """Where to continue: the committed offset in the same file, else the file's end."""
        size, committed = info.st_size, self._position
        fields = {"sink": self._name, "path": str(self._path)}
        if committed is None:
            return size
        if (committed.inode, committed.device) != (info.st_ino, info.st_dev):
            log.info("sink.file_replaced", **fields, appending_at=size)
            return size
        if size < committed.offset:
            # Someone truncated the file (copytruncate?): what is gone cannot be restored.
            log.warning(
                "sink.file_shorter_than_position", **fields, size=size, **committed.as_dict()
            )
            return size
        if size > committed.offset:
            # Written but never acknowledged: the outbox replays exactly these records.
            os.ftruncate(fd, committed.offset)
            if self._config.fsync == "batch":
                os.fsync(fd)
            log.info(
                "sink.file_truncated",
                **fields,
                offset=committed.offset,
                dropped=size - committed.offset,
            )
        return committed.offset

    def _append(self, payload: bytes) -> FilePosition:
        if self._fd is not None and _is_deleted(self._fd):
            # Removed (with its directory, perhaps) behind our back: writing on would fsync and
            # acknowledge records into a file nobody can ever read. Start a new one at the path.
            log.warning("sink.file_deleted", sink=self._name, path=str(self._path))
            self._close()
        if self._fd is None:  # deleted, or a reopen failed earlier: open before writing
            try:
                self._open()
            except OSError as error:
                raise RetryableSinkError(str(error)) from None
        assert self._fd is not None
        assert self._position is not None  # set by every successful _open
        fd, start = self._fd, self._position.offset
        try:
            if self._torn:
                os.ftruncate(fd, start)
                self._torn = False
            size = os.fstat(fd).st_size
            if size != start:
                log.warning(
                    "sink.file_changed_externally",
                    sink=self._name,
                    path=str(self._path),
                    expected_size=start,
                    size=size,
                )
                # Continue at the real end; a failed write below is cut off back to it.
                self._position = replace(self._position, offset=size)
                start = size
            _write_all(fd, payload)
            if self._config.fsync == "batch":
                _sync_data(fd)
        except OSError as error:
            self._cut_off(fd, start)
            raise RetryableSinkError(
                f"cannot write {len(payload)} bytes to {self._path}: {_reason(error)}"
            ) from None
        self._position = replace(self._position, offset=start + len(payload))
        return self._position

    def _cut_off(self, fd: int, offset: int) -> None:
        """Remove a partial write; if even that fails, remember to do it before the next write."""
        self._torn = True
        try:
            os.ftruncate(fd, offset)
        except OSError:
            return
        self._torn = False

    def _reopen(self) -> None:
        self._close()
        self._open()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _open_or_create(path: Path) -> tuple[int, bool]:
    """Open ``path`` for appending, creating it (and its parents); whether it was created."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            # Not even opened: a FIFO would block, and a device cannot be truncated or synced.
            raise OSError("not a regular file (use the stdout sink for pipes)")
    except FileNotFoundError:
        make_dirs(path.parent, SHARED_DIRECTORY)
        try:
            fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, SHARED)
        except FileExistsError:
            pass  # created by someone else in between: open theirs
        else:
            restrict(fd, SHARED)  # the umask may have left it as is; never more than 0640
            return fd, True
    fd = os.open(path, _OPEN_FLAGS)
    restrict(fd, SHARED)
    return fd, False


def _is_deleted(fd: int) -> bool:
    """Whether the open file has no name left (its last link was removed)."""
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return False  # the write that follows reports what is wrong


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_data(fd: int) -> None:
    # fdatasync also persists the new size, which is all appending needs; macOS lacks it.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(error: OSError) -> str:
    """The OS's words for an error (``No space left on device``), without the errno noise."""
    return error.strerror or str(error)
