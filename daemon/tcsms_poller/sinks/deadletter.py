"""The dead-letter file, where a batch goes when its sink refuses it for good, and the replay
queue that puts dead-lettered records back in front of that sink.

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
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio.to_thread
import orjson

from tcsms_poller.permissions import SHARED, SHARED_DIRECTORY, make_dirs, restrict
from tcsms_poller.records import format_received_at
from tcsms_poller.sinks.base import OutboxRecord

__all__ = ["DeadLetter", "DeadLetterFile", "ReplayQueue", "read_dead_letters"]


class DeadLetterFile:
    """Appends dead-lettered batches of one sink to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(
        self, batch: Sequence[OutboxRecord], *, sink: str, reason: str, now: float
    ) -> None:
        """Append every record of ``batch`` with the reason, durably."""
        prefix = (
            '{"dead_lettered_at":'
            + json.dumps(format_received_at(now))
            + ',"sink":'
            + json.dumps(sink)
            + ',"reason":'
            + json.dumps(reason, ensure_ascii=False)
            + ',"record":'
        ).encode("utf-8")
        payload = b"".join(prefix + record.data + b"}\n" for record in batch)
        await anyio.to_thread.run_sync(_append, self.path, payload)


def _append(path: Path, payload: bytes) -> None:
    make_dirs(path.parent, SHARED_DIRECTORY)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, SHARED)
    with open(fd, "ab") as file:
        restrict(fd, SHARED)  # records carry phone numbers: never world-readable
        file.write(payload)
        file.flush()
        os.fsync(fd)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One line of a dead-letter file."""

    dead_lettered_at: datetime
    reason: str
    record_id: str
    data: bytes  # the record, compact JSON as the outbox held it


def read_dead_letters(path: Path) -> Iterator[DeadLetter]:
    """The lines of a dead-letter file, oldest first; a torn last line (a crash) is skipped."""
    if not path.exists():
        return
    with path.open("rb") as file:
        for line in file:
            try:
                entry = orjson.loads(line)
                record = entry["record"]
                yield DeadLetter(
                    dead_lettered_at=datetime.fromisoformat(entry["dead_lettered_at"]),
                    reason=str(entry["reason"]),
                    record_id=str(record["id"]),
                    data=orjson.dumps(record),
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue


class ReplayQueue:
    """The replay queue and the ledger of acknowledged replays of the sink whose dead-letter
    file is ``dead_letter_path``; see the module docstring."""

    def __init__(self, dead_letter_path: Path) -> None:
        stem = dead_letter_path.name.removesuffix(".jsonl")
        self.path = dead_letter_path.with_name(f"{stem}.replay.jsonl")
        self.ledger = dead_letter_path.with_name(f"{stem}.replayed")
        self._lock_path = dead_letter_path.with_name(f"{stem}.replay.lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The command appends while a running daemon's drainer trims: one at a time."""
        make_dirs(self._lock_path.parent, SHARED_DIRECTORY)
        fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, SHARED)
        with open(fd, "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def acknowledged_ids(self) -> set[str]:
        """Ids of replayed records the sink acknowledged."""
        if not self.ledger.exists():
            return set()
        return set(self.ledger.read_text("utf-8").split())

    def queued(self) -> list[OutboxRecord]:
        """The records waiting, in order (``seq`` 0: they are not in the outbox)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            return [OutboxRecord(0, line.rstrip(b"\n")) for line in file if line.endswith(b"\n")]

    def enqueue(self, letters: Sequence[DeadLetter]) -> tuple[int, int]:
        """Queue ``letters`` not acknowledged or queued already; (queued, skipped)."""
        with self._locked():
            skip = self.acknowledged_ids() | {record.as_dict()["id"] for record in self.queued()}
            fresh: dict[str, bytes] = {}
            for letter in letters:
                if letter.record_id not in skip:
                    fresh.setdefault(letter.record_id, letter.data)
            if fresh:
                _append(self.path, b"".join(data + b"\n" for data in fresh.values()))
        return len(fresh), len(letters) - len(fresh)

    def finish(self, batch: Sequence[OutboxRecord], *, acknowledged: bool) -> None:
        """Drop the first ``len(batch)`` queued records; remember their ids if ``acknowledged``
        (a batch refused again is in the dead-letter file once more instead)."""
        with self._locked():
            if acknowledged:
                ids = "".join(f"{record.as_dict()['id']}\n" for record in batch)
                _append(self.ledger, ids.encode("utf-8"))
            rest = self.queued()[len(batch) :]
            if not rest:
                self.path.unlink(missing_ok=True)
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, SHARED)
            with open(fd, "wb") as file:
                restrict(fd, SHARED)
                file.write(b"".join(record.data + b"\n" for record in rest))
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(self.path)
