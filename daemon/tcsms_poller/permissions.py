"""Files private to the daemon, whatever the umask it was started with.

State and records carry phone numbers and reply texts. Under systemd ``UMask=0077`` keeps them
private, but ``run`` from a shell (umask 022) would leave them world-readable. So every
directory the daemon creates gets its mode by ``chmod`` (mkdir's mode is filtered by the umask),
every file it creates or opens for writing loses any permission beyond its mode, and SQLite,
which gives its WAL and SHM files the database file's mode, follows the database:

    state directory (when created)    0700
    state.db, its WAL, SHM, lock      0600
    file sink, dead letters           0640 (a log shipper in the group may read them)

Directories that already exist are the operator's: their mode is left as it is.

A command run from a root shell beside a daemon running as another user (systemd
``DynamicUser``) gives what it creates or replaces in the state directory that directory's
owner (``owner_of``), so the daemon can still write it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

__all__ = [
    "PRIVATE",
    "PRIVATE_DIRECTORY",
    "SHARED",
    "SHARED_DIRECTORY",
    "Owner",
    "give",
    "make_dirs",
    "owner_of",
    "restrict",
]

log = structlog.get_logger("tcsms_poller.permissions")

PRIVATE = 0o600
PRIVATE_DIRECTORY = 0o700
SHARED = 0o640
SHARED_DIRECTORY = 0o750


Owner = tuple[int, int]  # uid, gid


def owner_of(directory: Path) -> Owner | None:
    """Whom what we create in ``directory`` must belong to: the owner of ``directory`` (or of
    its nearest existing parent) when we run as root and it is another user; None when what
    we create is rightly ours."""
    if os.geteuid() != 0:
        return None
    for existing in (directory, *directory.parents):
        try:
            status = os.stat(existing)
        except FileNotFoundError:
            continue
        return None if status.st_uid == 0 else (status.st_uid, status.st_gid)
    return None


def give(target: int | Path, owner: Owner | None) -> None:
    """Make ``target`` (a descriptor or a path) ``owner``'s; nothing when ``owner`` is None."""
    if owner is None:
        return
    if isinstance(target, int):
        os.fchown(target, *owner)
    else:
        os.chown(target, *owner)


def make_dirs(path: Path, mode: int, owner: Owner | None = None) -> None:
    """Create ``path`` and any missing parents with exactly ``mode`` (and ``owner``)."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode)
        except FileExistsError:
            continue  # made by someone else in between: theirs
        os.chmod(directory, mode)
        give(directory, owner)


def restrict(target: int | Path, mode: int) -> None:
    """Take away any permission of ``target`` (a descriptor or a path) beyond ``mode``.

    A file we may not change (another owner's) is left as it is, with a warning.
    """
    try:
        current = stat.S_IMODE(os.stat(target).st_mode)
        if current & ~mode:
            if isinstance(target, int):
                os.fchmod(target, current & mode)
            else:
                os.chmod(target, current & mode)
    except FileNotFoundError:
        return
    except PermissionError as error:
        log.warning("file.permissions_not_restricted", mode=oct(mode), error=str(error))
