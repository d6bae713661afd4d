"""The async face of tracked messages (``roles.TrackedMessages``) over any ``StateStore``.

A backend supplies its ``MessageTables`` (SQLite: ``SqliteMessages`` here, over
``messages.py``; PostgreSQL: ``postgres/messages.py``); ``MessageStore`` adds the clock, the
reschedule of a failed poll and the give-up, which commit (the give-up its ``receipt_missing``
records) through the store's own ``commit``, where a cluster's claims fence them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

from tcsms_poller.records import Record, format_received_at, receipt_missing_record
from tcsms_poller.state.messages import (
    MessageRacedError,
    NewMessage,
    Schedule,
    TrackedMessage,
    add_messages,
    due_message_numbers,
    expired_messages,
    get_message,
    message_counts,
)
from tcsms_poller.state.roles import CommitResult, MessagesMissing, MessagesPolled, NumberClaim

if TYPE_CHECKING:
    from tcsms_poller.state.roles import MessageTables, StateStore, TrackedMessages
    from tcsms_poller.state.writer import Transaction

__all__ = ["GIVE_UP_BATCH", "MessageStore", "SqliteMessages", "tracked_messages"]

T = TypeVar("T")
GIVE_UP_BATCH = 500  # messages given up on in one transaction


def tracked_messages(
    store: StateStore, *, clock: Callable[[], float] = time.time
) -> TrackedMessages:
    """The tracked messages of ``store``."""
    return MessageStore(store, clock=clock)


class Runner(Protocol):
    """Runs a transaction of ``messages.py`` (``SqliteStore.write`` or ``read``)."""

    def __call__(self, work: Transaction[T]) -> Awaitable[T]: ...


class SqliteMessages:
    """The message tables (``roles.MessageTables``) of a ``SqliteStore``."""

    def __init__(self, write: Runner, read: Runner) -> None:
        self._write = write
        self._read = read

    async def add_messages(
        self, messages: Sequence[NewMessage], *, now: float, schedule: Schedule
    ) -> list[bool]:
        """Track ``messages`` (idempotent); for each, whether it was new."""
        return await self._write(
            partial(add_messages, messages=messages, now=now, schedule=schedule)
        )

    async def get_message(self, serial_no: str) -> TrackedMessage | None:
        """One tracked message by SerialNo, or None."""
        return await self._read(partial(get_message, serial_no=serial_no))

    async def message_counts(self) -> dict[str, int]:
        """Pending messages per app."""
        return await self._read(message_counts)

    async def due_message_numbers(
        self, app_id: str, *, now: float, limit: int, skip: frozenset[str]
    ) -> tuple[float | None, list[tuple[str, float, int]]]:
        """The app's earliest due time and its due numbers (on the writer's connection, whose
        page cache survives commits, as ``SqliteStore.due_numbers``)."""
        return await self._write(
            partial(due_message_numbers, app_id=app_id, now=now, limit=limit, skip=skip)
        )

    async def expired_messages(
        self, app_id: str, *, sent_before: float, limit: int
    ) -> list[TrackedMessage]:
        """Up to ``limit`` pending messages of the app sent before ``sent_before``."""
        return await self._read(
            partial(expired_messages, app_id=app_id, sent_before=sent_before, limit=limit)
        )


class MessageStore:
    """Tracked messages (``roles.TrackedMessages``) in a store's ``MessageTables``."""

    def __init__(self, store: StateStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._tables: MessageTables = store.message_tables()
        self._clock = clock

    @property
    def clock(self) -> float:
        """The time now, by the daemon's clock."""
        return self._clock()

    async def track(self, messages: Sequence[NewMessage], *, schedule: Schedule) -> list[bool]:
        """Track ``messages`` (idempotent); for each, whether it was new."""
        return await self._tables.add_messages(messages, now=self.clock, schedule=schedule)

    async def get(self, serial_no: str) -> TrackedMessage | None:
        """One tracked message by SerialNo, or None."""
        return await self._tables.get_message(serial_no)

    async def pending_counts(self) -> dict[str, int]:
        """Pending messages per app."""
        return await self._tables.message_counts()

    async def due(
        self, app_id: str, *, limit: int, skip: frozenset[str]
    ) -> tuple[float | None, list[tuple[str, float, int]]]:
        """The app's earliest due time and its due numbers: (phone, next_due, oldest sent_at).

        The one place a worker learns which numbers to poll: a per-number claim for a cluster
        belongs in the backend's ``due_message_numbers``.
        """
        return await self._tables.due_message_numbers(
            app_id, now=self.clock, limit=limit, skip=skip
        )

    def polled(self, app_id: str, phone: str, *, schedule: Schedule) -> MessagesPolled:
        """A step for the commit of a page of ``phone``: reschedule it, or drop it."""
        return MessagesPolled(app_id, phone, polled_at=self.clock, schedule=schedule)

    async def reschedule(
        self, app_id: str, phone: str, *, schedule: Schedule, claim: NumberClaim | None = None
    ) -> None:
        """A failed poll: the number is due at its messages' next poll time. It commits what a
        page's commit does to the number (``polled``), fenced by ``claim`` (cluster mode)."""
        step = MessagesPolled(app_id, phone, polled_at=self.clock, schedule=schedule, claim=claim)
        await self._store.commit([], source="tracking", also=step)

    async def expired(self, app_id: str, *, give_up_after: float) -> list[TrackedMessage]:
        """Up to ``GIVE_UP_BATCH`` messages of the app still pending ``give_up_after`` their
        send, oldest first."""
        return await self._tables.expired_messages(
            app_id, sent_before=self.clock - give_up_after, limit=GIVE_UP_BATCH
        )

    async def give_up(
        self,
        messages: Sequence[TrackedMessage],
        *,
        schedule: Schedule,
        claims: Sequence[NumberClaim] = (),
    ) -> CommitResult | None:
        """Commit ``receipt_missing`` for ``messages`` (read by ``expired``), marking them
        missing in the same transaction, fenced by ``claims`` (cluster mode: the claims on their
        numbers); None when there are none, or one resolved meanwhile (read them again)."""
        if not messages:
            return None
        now = self.clock
        received_at = format_received_at(now)
        records: list[Record] = [
            receipt_missing_record(
                m.app_id,
                serial_no=m.serial_no,
                phone_number=m.phone,
                sent_at=m.sent_at,
                received_at=received_at,
            )
            for m in messages
        ]
        step = MessagesMissing(
            tuple(messages), given_up_at=now, schedule=schedule, claims=tuple(claims)
        )
        try:
            return await self._store.commit(records, source="tracking", also=step)
        except MessageRacedError:  # rolled back whole; the next round reads afresh
            return None
