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

A command run as root beside a daemon running as another user (systemd ``DynamicUser``) acts
as the state directory's owner (``act_as_owner_of``) before it opens a state file: what it
creates is the daemon's, and what it opens is checked against the daemon's user, so a link that
user planted cannot make root write a file of its own.
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
    "act_as_owner_of",
    "make_dirs",
    "restrict",
]

log = structlog.get_logger("tcsms_poller.permissions")

PRIVATE = 0o600
PRIVATE_DIRECTORY = 0o700
SHARED = 0o640
SHARED_DIRECTORY = 0o750


def act_as_owner_of(directory: Path, owned: Path) -> tuple[int, int] | None:
    """Run as root, act in ``directory`` as the owner of ``owned`` (``directory`` itself or a
    directory in it) when that exists and is another user's: move into ``directory``, then
    drop supplementary groups, take its group, then its user, as the effective ids of the whole
    process (every thread). Returns that (uid, gid), or None when nothing changed.

    From then on every file is created by that user and opened with its rights, never root's,
    so a symlink it planted leads nowhere it could not write itself. The caller then reaches
    ``directory`` as ``.``: a user may own a directory it cannot reach by its path (systemd's
    ``DynamicUser`` keeps it under the root-only ``/var/lib/private``), and a path relative to
    the working directory needs no search permission above it.

    Raises:
        OSError: the ids could not be changed (no ``CAP_SETUID``, an unmapped id); the
            process is then part changed and must not touch a file.
    """
    if os.geteuid() != 0:
        return None
    try:
        status = os.stat(owned)
    except FileNotFoundError:
        return None
    if status.st_uid == 0:
        return None
    os.chdir(os.path.realpath(directory))
    os.setgroups([])  # groups and group first: once the user is not root, they cannot change
    os.setegid(status.st_gid)
    os.seteuid(status.st_uid)
    return status.st_uid, status.st_gid


def make_dirs(path: Path, mode: int) -> None:
    """Create ``path`` and any missing parents with exactly ``mode``."""
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
