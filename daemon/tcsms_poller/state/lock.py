"""One daemon per state: an exclusive lock beside the database while ``run`` or ``once`` runs.

Two daemons on one state would both drain its sinks. Every sink would get each record twice, and
worse, the second file sink, on opening, cuts the file back to the last acknowledged offset while
the first one appends past it. So ``run`` and ``once`` take ``flock`` on ``<database>.lock``
first, and refuse to start when another process holds it. The kernel releases the lock when its
process dies, however it dies: a crash never leaves a stale lock, and the file itself (which
names the holder's pid) is left in place, as removing it would race with the next holder.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tcsms_poller.permissions import PRIVATE, PRIVATE_DIRECTORY, make_dirs, restrict
from tcsms_poller.state.roles import StateError

__all__ = ["lock_path", "state_lock"]


def lock_path(database: Path) -> Path:
    """Where the lock of ``database`` lives: beside it."""
    return database.with_name(database.name + ".lock")


@contextmanager
def state_lock(database: Path) -> Iterator[None]:
    """Hold the state's lock for the block; ``StateError`` if another process holds it."""
    path = lock_path(database)
    try:
        make_dirs(database.parent, PRIVATE_DIRECTORY)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
        restrict(fd, PRIVATE)
    except OSError as error:
        raise StateError(f"cannot create the state lock {path}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"state database {database} is in use by another tcsms-poller"
                f"{_holder(fd)}: one daemon per state, stop the other first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """`` (pid N)`` as the holder wrote it, or nothing if it cannot be read."""
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
