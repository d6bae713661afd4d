"""Tracked messages: pending until their receipt commits by any path, or given up as missing.

A message is ``(serial_no, app_id, phone, sent_at)``, tracked through ``POST /v1/messages``
or ``track``. It resolves in the transaction that commits a final receipt with its SerialNo,
whichever source brought it (``resolve_messages`` runs inside every record commit), so a
crash can never leave a delivered receipt beside a pending message. A message without a
receipt ``give_up_after`` its send becomes ``missing``, in the same transaction that commits
its ``receipt_missing`` record.

Polling follows the messages: ``message_numbers`` holds one row per number with something
pending, due at the nearest poll time of its pending messages. A message is polled at
``sent_at + first_poll * 2**k`` (k = 0, 1, ...), the gaps capped at ``max_gap``; a number
whose last pending message resolved loses its row and costs nothing.

All functions run inside a transaction the caller (``StateStore``) opened.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tcsms_poller.records import Record

__all__ = [
    "COLUMNS",
    "FinalReceipt",
    "MessageRacedError",
    "MessageState",
    "NewMessage",
    "Resolved",
    "Schedule",
    "TrackedMessage",
    "add_messages",
    "after_poll",
    "due_message_numbers",
    "expired_messages",
    "final_receipts",
    "first_due",
    "get_message",
    "mark_missing",
    "message_counts",
    "next_due",
    "numbers_of",
    "purge_resolved",
    "resolve_messages",
]

MessageState = Literal["pending", "delivered", "failed", "missing"]
_FINAL: dict[str, MessageState] = {"SUCCESS": "delivered", "FAIL": "failed"}
MIN_GAP = 1.0  # a number is never due again sooner than this after a poll


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a pending message's number is polled: ``first_poll`` after the send, then doubling
    gaps up to ``max_gap``."""

    first_poll: float
    max_gap: float

    def next_poll(self, sent_at: float, now: float) -> float:
        """The first poll time of a message sent at ``sent_at`` that lies after ``now``."""
        age = now - sent_at
        if age < self.first_poll:
            return sent_at + self.first_poll
        steps = math.floor(math.log2(age / self.first_poll)) + 1
        return min(sent_at + self.first_poll * 2.0**steps, now + self.max_gap)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message to track."""

    app_id: str
    serial_no: str
    phone: str
    sent_at: int


@dataclass(frozen=True, slots=True)
class TrackedMessage:
    """A tracked message and what is known of its receipt."""

    app_id: str
    serial_no: str
    phone: str
    sent_at: int
    state: MessageState
    tracked_at: float
    resolved_at: float | None
    report_status: str | None
    description: str | None
    user_receive_time: int | None


@dataclass(frozen=True, slots=True)
class Resolved:
    """A message that a committed receipt resolved (for the metrics)."""

    state: MessageState
    sent_at: int
    user_receive_time: int


COLUMNS = (  # a ``TrackedMessage``'s columns, in its fields' order
    "app_id, serial_no, phone, sent_at, state, tracked_at, resolved_at, "
    "report_status, description, user_receive_time"
)


@dataclass(frozen=True, slots=True)
class FinalReceipt:
    """What a final receipt writes into its message."""

    serial_no: str
    state: MessageState
    report_status: str
    description: str | None
    user_receive_time: int


def final_receipts(records: Sequence[Record]) -> list[FinalReceipt]:
    """The final receipts among ``records``, the first of each SerialNo, ordered by SerialNo
    (the order both backends lock messages in)."""
    found: dict[str, FinalReceipt] = {}
    for record in records:
        if record.kind != "send_status":
            continue
        fields = record.fields
        state = _FINAL.get(fields["report_status"])
        if state is not None and fields["serial_no"] not in found:
            found[fields["serial_no"]] = FinalReceipt(
                fields["serial_no"],
                state,
                fields["report_status"],
                fields["description"],
                fields["user_receive_time"],
            )
    return [found[serial_no] for serial_no in sorted(found)]


def first_due(sent_at: int, *, now: float, schedule: Schedule) -> float:
    """When a newly tracked message wants its number polled: its first poll, at once if that
    has passed."""
    return max(now, sent_at + schedule.first_poll)


def next_due(sent_ats: Iterable[int], *, now: float, schedule: Schedule) -> float:
    """When a number just polled is due again: the nearest next poll of its pending messages,
    never sooner than ``MIN_GAP``."""
    return max(now + MIN_GAP, min(schedule.next_poll(sent_at, now) for sent_at in sent_ats))


def numbers_of(messages: Iterable[TrackedMessage]) -> list[tuple[str, str]]:
    """The numbers ``(app_id, phone)`` of ``messages``, once each, in the order both backends
    lock numbers in."""
    return sorted({(m.app_id, m.phone) for m in messages})


def add_messages(
    connection: sqlite3.Connection,
    messages: Sequence[NewMessage],
    *,
    now: float,
    schedule: Schedule,
) -> list[bool]:
    """Track ``messages``; for each, whether it is new (the same SerialNo twice is one message).

    A new message makes its number due at its first poll time (at once if that has passed),
    unless it is due sooner.
    """
    created: list[bool] = []
    for message in messages:
        cursor = connection.execute(
            "INSERT INTO messages (app_id, serial_no, phone, sent_at, state, tracked_at) "
            "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (serial_no) DO NOTHING",
            (message.app_id, message.serial_no, message.phone, message.sent_at, now),
        )
        created.append(cursor.rowcount > 0)
        if cursor.rowcount:
            due = first_due(message.sent_at, now=now, schedule=schedule)
            connection.execute(
                "INSERT INTO message_numbers (app_id, phone, next_due) VALUES (?, ?, ?) "
                "ON CONFLICT (app_id, phone) DO UPDATE "
                "SET next_due = MIN(next_due, excluded.next_due)",
                (message.app_id, message.phone, due),
            )
    return created


_ANY_PENDING = "SELECT 1 FROM messages WHERE state = 'pending' LIMIT 1"


def resolve_messages(
    connection: sqlite3.Connection, records: Sequence[Record], *, now: float
) -> list[Resolved]:
    """Resolve the pending messages that ``records`` hold a final receipt of.

    Every send_status record counts, new or a duplicate: a message tracked after its receipt
    was first committed resolves when a poll finds the receipt again.
    """
    resolved: list[Resolved] = []
    # Most commits hold receipts of messages nobody tracks: one look at the pending messages'
    # index spares a statement per receipt (about a tenth of a commit's cost) when none is pending.
    if connection.execute(_ANY_PENDING).fetchone() is None:
        return resolved
    idle: set[tuple[str, str]] = set()
    for receipt in final_receipts(records):
        row = connection.execute(
            "UPDATE messages SET state = ?, resolved_at = ?, report_status = ?, "
            "description = ?, user_receive_time = ? "
            "WHERE serial_no = ? AND state = 'pending' RETURNING sent_at, app_id, phone",
            (
                receipt.state,
                now,
                receipt.report_status,
                receipt.description,
                receipt.user_receive_time,
                receipt.serial_no,
            ),
        ).fetchone()
        if row is not None:
            resolved.append(Resolved(receipt.state, row[0], receipt.user_receive_time))
            idle.add((row[1], row[2]))
    for app_id, phone in idle:  # a number with nothing left pending costs nothing from now on
        connection.execute(
            "DELETE FROM message_numbers WHERE app_id = ? AND phone = ? AND NOT EXISTS ("
            "SELECT 1 FROM messages WHERE app_id = ? AND phone = ? AND state = 'pending')",
            (app_id, phone, app_id, phone),
        )
    return resolved


def after_poll(
    connection: sqlite3.Connection, app_id: str, phone: str, *, now: float, schedule: Schedule
) -> None:
    """A poll of ``phone`` committed: due again at its pending messages' next poll, or dropped."""
    rows = connection.execute(
        "SELECT sent_at FROM messages WHERE app_id = ? AND phone = ? AND state = 'pending'",
        (app_id, phone),
    ).fetchall()
    if not rows:
        connection.execute(
            "DELETE FROM message_numbers WHERE app_id = ? AND phone = ?", (app_id, phone)
        )
        return
    due = next_due((sent_at for (sent_at,) in rows), now=now, schedule=schedule)
    connection.execute(
        "UPDATE message_numbers SET next_due = ? WHERE app_id = ? AND phone = ?",
        (due, app_id, phone),
    )


def due_message_numbers(
    connection: sqlite3.Connection,
    app_id: str,
    *,
    now: float,
    limit: int,
    skip: frozenset[str],
) -> tuple[float | None, list[tuple[str, float, int]]]:
    """The app's earliest ``next_due`` (None: nothing pending) and up to ``limit`` due numbers
    not in ``skip``, most overdue first: ``(phone, next_due, oldest pending sent_at)``."""
    first = connection.execute(
        "SELECT next_due FROM message_numbers WHERE app_id = ? ORDER BY next_due LIMIT 1",
        (app_id,),
    ).fetchone()
    if first is None or first[0] > now:
        return (None if first is None else float(first[0])), []
    rows = connection.execute(
        "SELECT phone, next_due FROM message_numbers WHERE app_id = ? AND next_due <= ? "
        "ORDER BY next_due LIMIT ?",
        (app_id, now, limit + len(skip)),
    ).fetchall()
    picked: list[tuple[str, float, int]] = []
    for phone, next_due in rows:
        if phone in skip or len(picked) == limit:
            continue
        (oldest,) = connection.execute(
            "SELECT MIN(sent_at) FROM messages WHERE app_id = ? AND phone = ? "
            "AND state = 'pending'",
            (app_id, phone),
        ).fetchone()
        picked.append((phone, float(next_due), int(oldest if oldest is not None else now)))
    return float(first[0]), picked


def expired_messages(
    connection: sqlite3.Connection, app_id: str, *, sent_before: float, limit: int
) -> list[TrackedMessage]:
    """Up to ``limit`` pending messages of the app sent before ``sent_before``."""
    rows = connection.execute(
        f"SELECT {COLUMNS} FROM messages WHERE state = 'pending' AND sent_at < ? "  # noqa: S608
        "AND app_id = ? ORDER BY sent_at LIMIT ?",
        (sent_before, app_id, limit),
    ).fetchall()
    return [TrackedMessage(*row) for row in rows]


class MessageRacedError(Exception):
    """A message given up on was resolved meanwhile: the give-up is rolled back whole."""


def mark_missing(
    connection: sqlite3.Connection,
    messages: Sequence[TrackedMessage],
    *,
    now: float,
    schedule: Schedule,
) -> None:
    """Mark ``messages`` missing, beside their committed ``receipt_missing`` records.

    Raises:
        MessageRacedError: one of them is no longer pending (its receipt came after the read).
    """
    for message in messages:
        cursor = connection.execute(
            "UPDATE messages SET state = 'missing', resolved_at = ? "
            "WHERE serial_no = ? AND state = 'pending'",
            (now, message.serial_no),
        )
        if cursor.rowcount == 0:
            raise MessageRacedError(message.serial_no)
    for app_id, phone in numbers_of(messages):
        after_poll(connection, app_id, phone, now=now, schedule=schedule)


def get_message(connection: sqlite3.Connection, serial_no: str) -> TrackedMessage | None:
    """One tracked message, or None."""
    row = connection.execute(
        f"SELECT {COLUMNS} FROM messages WHERE serial_no = ?",  # noqa: S608
        (serial_no,),
    ).fetchone()
    return None if row is None else TrackedMessage(*row)


def message_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """Pending messages per app."""
    rows = connection.execute(
        "SELECT app_id, COUNT(*) FROM messages WHERE state = 'pending' GROUP BY app_id"
    )
    return {str(app_id): int(count) for app_id, count in rows}


def purge_resolved(connection: sqlite3.Connection, *, before: float, limit: int) -> int:
    """Forget up to ``limit`` messages resolved before ``before``."""
    return connection.execute(
        "DELETE FROM messages WHERE serial_no IN (SELECT serial_no FROM messages "
        "WHERE state != 'pending' AND resolved_at < ? LIMIT ?)",
        (before, limit),
    ).rowcount
