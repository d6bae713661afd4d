"""Checks on the state database before the daemon trusts it, and its creation.

The state is what makes delivery exactly-once: seen ids, the outbox and every sink's cursor. A
damaged one must stop the daemon with one clear line rather than let it carry on: an empty file
would start everything over (re-delivering every record to a file sink, dropping an HTTP sink's
backlog), a cursor beyond the newest record makes its sink skip every new record while reporting
nothing pending, and an unreadable position or page fails later, far from its cause. So before
the store opens it, ``vet`` refuses:

- a zero-length file, or a database without our schema, where a database is expected;
- anything ``PRAGMA quick_check`` finds (given ``QUICK_CHECK_BUDGET``: a very large database
  is checked as far as that allows, then trusted, with a warning);
- a sink cursor beyond the outbox head, and a sink position that is not a JSON object.

A database that does not exist yet is created whole: under a temporary name, with the schema in
place, then renamed, so a crash during the first start never leaves an empty or schema-less file
behind to be refused. To start afresh deliberately, remove ``state.db`` and its ``-wal`` and
``-shm`` files (while the daemon is stopped).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import structlog

from tcsms_poller.permissions import PRIVATE, PRIVATE_DIRECTORY, make_dirs, restrict
from tcsms_poller.state.schema import migrate

__all__ = [
    "QUICK_CHECK_BUDGET",
    "SINK_CURSORS",
    "IntegrityError",
    "cursor_problem",
    "refusal",
    "vet",
]

log = structlog.get_logger("tcsms_poller.state")

QUICK_CHECK_BUDGET = 10.0  # seconds; well inside systemd's start timeout
_SIDE_FILES = ("-wal", "-shm", "-journal")
_PROGRESS_STEPS = 10_000  # SQLite instructions between looks at the clock


class IntegrityError(Exception):
    """The state database is damaged or not ours; the message says what and what to do."""


def vet(path: Path) -> None:
    """Make ``path`` safe to open: create it whole if missing, else check it (see module doc).

    Raises:
        IntegrityError: the file is empty, not ours, or inconsistent.
        sqlite3.Error, OSError: it could not be read or created at all.
    """
    make_dirs(path.parent, PRIVATE_DIRECTORY)
    directory_mode = stat.S_IMODE(path.parent.stat().st_mode)
    if directory_mode & 0o077:  # the operator's directory: said, not changed
        log.warning("state.directory_not_private", path=str(path.parent), mode=oct(directory_mode))
    if not path.exists():
        _create(path)
        return
    for name in ("", *_SIDE_FILES):
        restrict(Path(f"{path}{name}"), PRIVATE)
    fresh = f"to start afresh deliberately, stop the daemon and remove {path} (and its -wal, -shm)"
    if path.stat().st_size == 0:
        raise IntegrityError(
            f"state database {path} is an empty file, not a tcsms-poller database; refusing to "
            f"start over (every cursor would reset); {fresh}"
        )
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        problem = _problem(connection)
    except sqlite3.DatabaseError as error:
        problem = f"cannot be read as a database ({error})"
    finally:
        connection.close()
    if problem is not None:
        raise refusal(str(path), problem, fresh=fresh)


def refusal(database: str, problem: str, *, fresh: str) -> IntegrityError:
    """The one line refusing ``database`` (as it may be shown) for ``problem``; ``fresh``
    says how to start afresh deliberately."""
    return IntegrityError(
        f"state database {database} {problem}; restore it from a backup, or {fresh}"
    )


def _problem(connection: sqlite3.Connection) -> str | None:
    """What is wrong with the database, or None."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if version == 0 or not {"outbox", "sink_cursors"} <= tables:
        return "has no tcsms-poller schema"
    damage = _quick_check(connection)
    if damage is not None:
        return f"is damaged (quick_check: {damage})"
    cursors = connection.execute(SINK_CURSORS).fetchall()
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return cursor_problem(cursors, head=int(row[0]) if row else 0)


# Both backends read the cursors so, then the outbox head, and vet them with ``cursor_problem``.
SINK_CURSORS = "SELECT name, acked_seq, position FROM sink_cursors ORDER BY name"


def cursor_problem(cursors: Iterable[Sequence[Any]], *, head: int) -> str | None:
    """What is wrong with the rows of ``SINK_CURSORS`` given the outbox ``head`` (the highest
    seq ever given), or None. Read the cursors before the head: a cursor another process moves
    meanwhile then never passes the head read."""
    for name, acked, position in cursors:
        if not isinstance(acked, int) or acked > head or acked < 0:
            return (
                f"has sink {name!r} acknowledged up to {acked!r}, beyond the newest record {head}"
            )
        if position is not None and not _is_json_object(position):
            return f"has an unreadable position for sink {name!r}: {str(position)[:80]!r}"
    return None


def _quick_check(connection: sqlite3.Connection) -> str | None:
    """The first problem ``PRAGMA quick_check`` reports within the budget, or None."""
    deadline = time.monotonic() + QUICK_CHECK_BUDGET
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    try:
        rows = connection.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.OperationalError as error:
        if "interrupt" not in str(error):
            raise
        log.warning("state.quick_check_incomplete", budget_s=QUICK_CHECK_BUDGET)
        return None
    finally:
        connection.set_progress_handler(None, 0)
    result = " ".join(str(rows[0][0]).split()) if rows else "ok"  # one line
    return None if result == "ok" else result


def _is_json_object(text: object) -> bool:
    try:
        return isinstance(text, str) and isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _create(path: Path) -> None:
    """A new database with the schema in place, appearing under ``path`` only when complete."""
    temporary = path.with_name(path.name + ".new")
    for name in ("", *_SIDE_FILES):
        Path(f"{temporary}{name}").unlink(missing_ok=True)  # a crashed first start's leftovers
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
    try:
        restrict(fd, PRIVATE)  # SQLite gives the WAL and SHM files this mode too
    finally:
        os.close(fd)
    connection = sqlite3.connect(temporary, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        migrate(connection)
    finally:
        connection.close()  # checkpoints the WAL into the file and removes it
    fd = os.open(temporary, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
