"""The dead-letter file, where a batch goes when its sink refuses it for good, and the replay
queue that puts dead-lettered records back in front of that sink: the ``DeadLetters`` role
(``state/roles.py``) of a SQLite state, one daemon's. (A PostgreSQL state keeps them in its
tables instead, for every instance of a cluster: ``state/postgres/deadletters.py``.)

Per sink, under ``<state dir>/dead-letter/``:

- ``<sink>.jsonl``: one JSON object per line, ``{"dead_lettered_at", "sink", "reason",
  "record"}``, ``record`` being the exact record the sink would have received. The file is
  fsynced before the outbox forgets the batch, so giving up on a sink never loses a record
  silently.
- ``<sink>.replay.jsonl``: records ``tcsms-poller dead-letter replay`` queued again, one JSON
  record a line. The sink's drainer delivers them before the outbox when it starts, and when a
  running daemon is sent SIGHUP; a batch refused again goes back to the dead-letter file.
- ``<sink>.replayed``: the ids of replayed records the sink acknowledged, one a line, so
  replaying the same dead letters again queues nothing twice.
- ``<sink>.replay.lock``: ``flock``ed by whoever changes any of them (the daemon appending dead
  letters, ``finish``; the commands ``replay`` and ``purge``), so a command works beside a
  running daemon. ``purge`` rewrites the dead-letter file and the ledger whole: a temporary
  file beside each, fsynced, renamed over it, the directory fsynced.

An append after a line torn by a crash first cuts the torn line off (``_append``): it hides
nothing, and nothing reads it as a line. A command run as root beside a daemon running as
another user acts as the state directory's owner (``permissions.act_as_owner_of``) before it
opens any of these files, so what it writes stays the daemon's; ``unwritable`` names a file it
still could not write (one an earlier root run left root's).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import orjson

from tcsms_poller.permissions import SHARED, SHARED_DIRECTORY, make_dirs, restrict
from tcsms_poller.records import format_received_at, record_ids
from tcsms_poller.sinks.base import OutboxRecord
from tcsms_poller.state.roles import DeadLetter, Fence, Purged

__all__ = [
    "DeadLetter",
    "DeadLetterFile",
    "DeadLetterFiles",
    "dead_letter_counts",
    "dead_letter_path",
    "dead_letter_sinks",
    "read_dead_letters",
]

_CHUNK = 1 << 20  # bytes read at a time when counting lines


def dead_letter_path(state_dir: Path, sink: str) -> Path:
    """Where the dead letters of ``sink`` go beside a SQLite state in ``state_dir``."""
    return state_dir / "dead-letter" / f"{sink}.jsonl"


def dead_letter_sinks(state_dir: Path) -> set[str]:
    """The sinks with a dead-letter file or a replay queue beside a SQLite state in
    ``state_dir``, by the files' names alone."""
    directory = dead_letter_path(state_dir, "sink").parent
    return {
        path.name.removesuffix(".replay.jsonl").removesuffix(".jsonl")
        for path in (directory.glob("*.jsonl") if directory.is_dir() else ())
    }


def dead_letter_counts(state_dir: Path) -> dict[str, tuple[int, int]]:
    """Per sink with any, its dead letters and the records queued for replay beside a SQLite
    state in ``state_dir``: the complete lines of its files, read a chunk at a time."""
    directory = dead_letter_path(state_dir, "sink").parent
    counts: dict[str, tuple[int, int]] = {}
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else ():
        replays = path.name.endswith(".replay.jsonl")
        sink = path.name.removesuffix(".replay.jsonl" if replays else ".jsonl")
        letters, queued = counts.get(sink, (0, 0))
        lines = _count_lines(path)
        counts[sink] = (letters, queued + lines) if replays else (letters + lines, queued)
    return {sink: both for sink, both in counts.items() if any(both)}


def _count_lines(path: Path) -> int:
    """The newline-terminated lines of ``path`` (a torn last one is not counted; 0 if gone)."""
    try:
        with path.open("rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(partial(file.read, _CHUNK), b""))
    except FileNotFoundError:  # a replay queue its drainer emptied meanwhile
        return 0


class DeadLetterFile:
    """The dead letters of one sink in the file ``path`` and its replay queue beside it
    (``DeadLetters``); the sink is named by the file, as ``dead_letter_path`` makes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sink = path.name.removesuffix(".jsonl")
        self._files = DeadLetterFiles(path)

    @property
    def log_fields(self) -> Mapping[str, str]:
        """The file's path, for log events."""
        return {"path": str(self.path)}

    async def write(
        self,
        batch: Sequence[OutboxRecord],
        *,
        reason: str,
        now: float,
        fence: Fence | None = None,  # one daemon per SQLite state: nothing to fence
    ) -> None:
        """Append every record of ``batch`` with the reason, durably."""
        prefix = (
            '{"dead_lettered_at":'
            + json.dumps(format_received_at(now))
            + ',"sink":'
            + json.dumps(self.sink)
            + ',"reason":'
            + json.dumps(reason, ensure_ascii=False)
            + ',"record":'
        ).encode("utf-8")
        payload = b"".join(prefix + record.data + b"}\n" for record in batch)
        await anyio.to_thread.run_sync(self._files.append_dead_letters, payload)

    async def letters(self, *, since: datetime | None = None) -> list[DeadLetter]:
        """The lines of the file, oldest first; with ``since``, those written since then."""

        def read() -> list[DeadLetter]:
            return [
                letter
                for letter in read_dead_letters(self.path)
                if since is None or letter.dead_lettered_at >= since
            ]

        return await anyio.to_thread.run_sync(read)

    async def replayed_ids(self) -> set[str]:
        """Ids of replayed records the sink acknowledged."""
        return await anyio.to_thread.run_sync(self._files.acknowledged_ids)

    async def queued(self, *, limit: int | None = None) -> list[OutboxRecord]:
        """The records queued for replay, in order."""
        return (await anyio.to_thread.run_sync(self._files.queued))[:limit]

    async def enqueue(self, letters: Sequence[DeadLetter]) -> tuple[int, int]:
        """Queue the records of ``letters`` still dead-lettered, not acknowledged or queued
        already; (queued, skipped)."""
        return await anyio.to_thread.run_sync(self._files.enqueue, letters)

    async def finish(
        self, batch: Sequence[OutboxRecord], *, acknowledged: bool, fence: Fence | None = None
    ) -> None:
        """Drop ``batch`` from the head of the queue; remember its ids if ``acknowledged``."""
        await anyio.to_thread.run_sync(
            partial(self._files.finish, batch, acknowledged=acknowledged)
        )

    async def purge(
        self,
        *,
        before: datetime | None = None,
        replayed: bool = False,
        dry_run: bool = False,
        delivered: bool = True,
    ) -> Purged:
        """Remove the selected dead letters, keeping those queued for replay (``DeadLetters``)."""
        return await anyio.to_thread.run_sync(
            partial(
                self._files.purge,
                before=before,
                replayed=replayed,
                dry_run=dry_run,
                delivered=delivered,
            )
        )

    async def wait_for_replay(self) -> None:
        """Never returns: a running daemon hears of a replay by SIGHUP (``Drainer.reopen``)."""
        await anyio.sleep_forever()


def _append(path: Path, payload: bytes) -> None:
    """Append ``payload`` (whole lines) to ``path``, durably, under the sink's lock.

    A file that does not end with a newline ends with a write a crash (or a full disk) cut
    short: it is cut back to just after its last newline first. What it held is written again
    in full, so nothing is lost, and it never becomes a whole line of its own (a bogus dead
    letter ``status`` would count, a bogus id in the ledger):

    - the dead-letter file: the drainer retries a failed write with the whole batch, and after
      a crash its cursor has not moved past the batch, which is sent (and refused) again;
    - the ledger: ``finish`` appends before it takes the batch out of the replay queue, so
      after a crash the batch is delivered, and its ids appended, again;
    - the replay queue: ``replay`` failed, so it reported nothing queued; run again, it queues
      what is missing (the complete lines before the torn one are queued already).
    """
    make_dirs(path.parent, SHARED_DIRECTORY)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, SHARED)
    with open(fd, "ab") as file:
        restrict(fd, SHARED)  # records carry phone numbers: never world-readable
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.ftruncate(fd, _after_last_newline(fd, size))
        file.write(payload)
        file.flush()
        os.fsync(fd)


def _after_last_newline(fd: int, size: int) -> int:
    """The offset just after the last newline of the first ``size`` bytes of ``fd`` (0 if
    none), read backwards a chunk at a time."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


class _Rewrite:
    """The new content of ``path``, written into a temporary file beside it; ``commit`` makes
    it the content of ``path`` at once, durably (removes ``path`` when nothing was written);
    leaving the block without ``commit`` throws it away."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._temporary = path.with_name(path.name + ".tmp")
        fd = os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, SHARED)
        self._file = open(fd, "wb")  # noqa: SIM115 -- closed by commit or __exit__
        restrict(fd, SHARED)
        self._written = 0

    def __enter__(self) -> _Rewrite:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self._file.close()
            self._temporary.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        self._written += self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self._written:
            self._temporary.replace(self._path)
        else:
            self._temporary.unlink()
            self._path.unlink(missing_ok=True)
        fd = os.open(self._path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)  # the rename (or the removal) survives a crash too
        finally:
            os.close(fd)


def _replace(path: Path, payload: bytes) -> None:
    """Make ``payload`` the content of ``path`` at once, durably (removed when empty)."""
    with _Rewrite(path) as new:
        new.write(payload)
        new.commit()


def read_dead_letters(path: Path) -> Iterator[DeadLetter]:
    """The lines of a dead-letter file, oldest first; a torn last line (a crash) is skipped."""
    if not path.exists():
        return
    with path.open("rb") as file:
        for line in file:
            if (letter := _dead_letter(line)) is not None:
                yield letter


def _dead_letter(line: bytes) -> DeadLetter | None:
    """The dead letter a line of the file holds; None for a torn or foreign line."""
    try:
        entry = orjson.loads(line)
        record = entry["record"]
        return DeadLetter(
            dead_lettered_at=datetime.fromisoformat(entry["dead_lettered_at"]),
            reason=str(entry["reason"]),
            record_id=str(record["id"]),
            data=orjson.dumps(record),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class DeadLetterFiles:
    """The files of one sink's dead letters, each changed only here and under the lock: the
    dead-letter file ``letters_path``, the replay queue ``queue_path``, the ledger of
    acknowledged replays ``ledger_path``; see the module docstring."""

    def __init__(self, dead_letter_path: Path) -> None:
        stem = dead_letter_path.name.removesuffix(".jsonl")
        self.letters_path = dead_letter_path
        self.queue_path = dead_letter_path.with_name(f"{stem}.replay.jsonl")
        self.ledger_path = dead_letter_path.with_name(f"{stem}.replayed")
        self.lock_path = dead_letter_path.with_name(f"{stem}.replay.lock")

    def unwritable(self) -> Path | None:
        """The first of ``dead-letter/`` and the sink's files (and their temporary files)
        that exists and this process may not write, or None: a command checks them before
        it changes anything."""
        directory = self.letters_path.parent
        if not directory.exists():
            return None
        rewritten = (self.letters_path, self.queue_path, self.ledger_path)
        for path in (
            directory,
            *rewritten,
            self.lock_path,
            *(one.with_name(one.name + ".tmp") for one in rewritten),
        ):
            if os.path.lexists(path) and not os.access(path, os.W_OK, effective_ids=True):
                return path
        return None

    @contextmanager
    def _locked(self, *, create: bool = True) -> Iterator[None]:
        """A command changes the files while a running daemon does: one at a time. Without
        ``create`` (a dry run), nothing is made: without a lock file it reads unlocked, a torn
        last line being skipped as any reader skips it."""
        flags = os.O_CLOEXEC | (os.O_WRONLY | os.O_CREAT if create else os.O_RDONLY)
        if create:
            make_dirs(self.lock_path.parent, SHARED_DIRECTORY)
        try:
            fd = os.open(self.lock_path, flags, SHARED)
        except FileNotFoundError:
            if create:
                raise
            yield
            return
        with open(fd, "ab" if create else "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def acknowledged_ids(self) -> set[str]:
        """Ids of replayed records the sink acknowledged: the complete lines of the ledger (a
        torn last one, cut short by a crash, is no id)."""
        if not self.ledger_path.exists():
            return set()
        data = self.ledger_path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1].decode("utf-8")
        return {line for line in complete.split("\n") if line}

    def queued(self) -> list[OutboxRecord]:
        """The records waiting, in order (``seq`` 0: they are not in the outbox); a line
        torn by a crash is none."""
        if not self.queue_path.exists():
            return []
        with self.queue_path.open("rb") as file:
            return [
                OutboxRecord(0, line.rstrip(b"\n"))
                for line in file
                if line.endswith(b"\n") and _is_object(line)
            ]

    def queued_ids(self) -> set[str]:
        """Ids of the records waiting."""
        return set(record_ids(self.queued()))

    def enqueue(self, letters: Sequence[DeadLetter]) -> tuple[int, int]:
        """Queue the records of ``letters`` that are still in the dead-letter file (a purge
        may have taken them since they were read), not acknowledged and not queued already,
        all read under the lock, so a purge meanwhile cannot make a delivered record queued
        again; (queued, skipped)."""
        if not letters:
            return 0, 0
        with self._locked():
            present = {letter.record_id for letter in read_dead_letters(self.letters_path)}
            skip = self.acknowledged_ids() | self.queued_ids()
            fresh: dict[str, bytes] = {}
            for letter in letters:
                if letter.record_id in present and letter.record_id not in skip:
                    fresh.setdefault(letter.record_id, letter.data)
            if fresh:
                _append(self.queue_path, b"".join(data + b"\n" for data in fresh.values()))
        return len(fresh), len(letters) - len(fresh)

    def append_dead_letters(self, payload: bytes) -> None:
        """Append lines to the dead-letter file, durably."""
        with self._locked():
            _append(self.letters_path, payload)

    def purge(
        self, *, before: datetime | None, replayed: bool, dry_run: bool, delivered: bool = True
    ) -> Purged:
        """``DeadLetters.purge``, the kept lines streamed into the new file as they are read.
        Without ``delivered`` (a sink no longer configured) the replay queue is removed first
        and holds nothing back.

        Lines other than dead letters are kept, but for a torn last one: a write a crash or a
        failure cut short, whose whole batch was written again (the drainer retries a failed
        dead-letter write, and after a crash the cursor has not moved past the batch), so
        dropping it loses nothing, while keeping it would glue the next append onto it. A dry
        run, or a purge with no dead-letter file, creates nothing.
        """
        if not (self.letters_path.exists() or (not delivered and self.queue_path.exists())):
            return Purged(removed=0, kept=0, held=0)
        with self._locked(create=not dry_run), contextlib.ExitStack() as stack:
            if not (delivered or dry_run):
                _replace(self.queue_path, b"")  # removed, durably: nothing would deliver it
            try:
                file = stack.enter_context(self.letters_path.open("rb"))
            except FileNotFoundError:  # only a command removes it, under the lock
                return Purged(removed=0, kept=0, held=0)
            new = None if dry_run else stack.enter_context(_Rewrite(self.letters_path))
            acknowledged = self.acknowledged_ids()
            queued = self.queued_ids() if delivered else set()
            kept_ids: set[str] = set()
            removed = held = kept = 0
            for line in file:
                letter = _dead_letter(line)
                if letter is None and not line.endswith(b"\n"):
                    continue  # torn last line
                if letter is not None and _selected(letter, before, replayed, acknowledged):
                    if letter.record_id not in queued:
                        removed += 1
                        continue
                    held += 1
                if new is not None:
                    new.write(line if line.endswith(b"\n") else line + b"\n")
                if letter is not None:
                    kept_ids.add(letter.record_id)
                    kept += 1
            if new is not None and removed:
                new.commit()
                if acknowledged - kept_ids:
                    ids = "".join(f"{one}\n" for one in sorted(acknowledged & kept_ids))
                    _replace(self.ledger_path, ids.encode("utf-8"))
        return Purged(removed=removed, kept=kept, held=held)

    def finish(self, batch: Sequence[OutboxRecord], *, acknowledged: bool) -> None:
        """Drop the first ``len(batch)`` queued records; remember their ids if ``acknowledged``
        (a batch refused again is in the dead-letter file once more instead)."""
        with self._locked():
            if acknowledged:
                ids = "".join(f"{one}\n" for one in record_ids(batch))
                _append(self.ledger_path, ids.encode("utf-8"))
            rest = self.queued()[len(batch) :]
            _replace(self.queue_path, b"".join(record.data + b"\n" for record in rest))


def _is_object(line: bytes) -> bool:
    """Whether ``line`` is a JSON object (a record), not one torn by a crash."""
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _selected(
    letter: DeadLetter, before: datetime | None, replayed: bool, acknowledged: set[str]
) -> bool:
    """Whether ``purge`` selects ``letter``: old enough, and delivered if ``replayed``."""
    if before is not None and letter.dead_lettered_at >= before:
        return False
    return not replayed or letter.record_id in acknowledged
