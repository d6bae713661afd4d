"""Reading a small text file an operator named: a regular file of bounded size, or an error.

The configuration, its ``*_file`` secrets and its numbers files are paths an operator types, so
they can name anything: ``/dev/zero`` (reading it would fill the memory), a FIFO (reading it
blocks until a writer comes, perhaps never), a directory, a multi-gigabyte log. Each is refused
with a message fit to show, before a byte is read: the file is opened without blocking, checked
with ``fstat`` on the open descriptor (no race with a rename), and read up to its limit only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tcsms_poller.units import format_size

__all__ = ["TextFileError", "read_text_file"]

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


class TextFileError(ValueError):
    """The file cannot be read as a small text file: ``cannot read PATH: reason``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.reason = reason


def read_text_file(path: Path, *, max_bytes: int) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``max_bytes`` long."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as error:
        raise TextFileError(path, str(error.strerror or error)) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            kind = _KINDS.get(stat.S_IFMT(status.st_mode), "a special file")
            raise TextFileError(path, f"it is {kind}, not a regular file")
        if status.st_size > max_bytes:
            raise TextFileError(path, f"larger than {format_size(max_bytes)}")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise TextFileError(path, str(error.strerror or error)) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew since fstat
        raise TextFileError(path, f"larger than {format_size(max_bytes)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextFileError(path, f"not UTF-8 text (byte {error.start + 1} is invalid)") from None
