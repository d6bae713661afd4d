"""The async face of tracked messages (``messages.py``) over a ``StateStore``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from tcsms_poller.records import Record, format_received_at, receipt_missing_record
from tcsms_poller.state.messages import (
    MessageRacedError,
    NewMessage,
    Schedule,
    TrackedMessage,
    add_messages,
    after_poll,
    due_message_numbers,
    expired_messages,
    get_message,
    message_counts,
)
from tcsms_poller.state.roles import CommitResult, MessagesMissing, MessagesPolled
from tcsms_poller.state.store import SqliteStore

if TYPE_CHECKING:
    from tcsms_poller.state.roles import StateStore, TrackedMessages

__all__ = ["GIVE_UP_BATCH", "UNAVAILABLE", "MessageStore", "tracked_messages"]

GIVE_UP_BATCH = 500  # messages given up on in one transaction
UNAVAILABLE = (
    "message tracking keeps its state in SQLite only: with state.url (PostgreSQL) the tracking "
    "workers do not run and POST /v1/messages answers 501"
)


def tracked_messages(
    store: StateStore, *, clock: Callable[[], float] = time.time
) -> TrackedMessages | None:
    """The tracked messages of ``store``; None where its backend does not keep them."""
    return MessageStore(store, clock=clock) if isinstance(store, SqliteStore) else None


class MessageStore:
    """Tracked messages (``roles.TrackedMessages``) in the SQLite state."""

    def __init__(self, store: SqliteStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    @property
    def clock(self) -> float:
        """The time now, by the daemon's clock."""
        return self._clock()

    async def track(self, messages: Sequence[NewMessage], *, schedule: Schedule) -> list[bool]:
        """Track ``messages`` (idempotent); for each, whether it was new."""
        return await self._store.write(
            partial(add_messages, messages=messages, now=self.clock, schedule=schedule)
        )

    async def get(self, serial_no: str) -> TrackedMessage | None:
        """One tracked message by SerialNo, or None."""
        return await self._store.read(partial(get_message, serial_no=serial_no))

    async def pending_counts(self) -> dict[str, int]:
        """Pending messages per app."""
        return await self._store.read(message_counts)

    async def due(
        self, app_id: str, *, limit: int, skip: frozenset[str]
    ) -> tuple[float | None, list[tuple[str, float, int]]]:
        """The app's earliest due time and its due numbers: (phone, next_due, oldest sent_at)."""
        return await self._store.write(
            partial(due_message_numbers, app_id=app_id, now=self.clock, limit=limit, skip=skip)
        )

    def polled(self, app_id: str, phone: str, *, schedule: Schedule) -> MessagesPolled:
        """A step for the commit of a page of ``phone``: reschedule it, or drop it."""
        return MessagesPolled(app_id, phone, polled_at=self.clock, schedule=schedule)

    async def reschedule(self, app_id: str, phone: str, *, schedule: Schedule) -> None:
        """A failed poll: the number is due at its messages' next poll time."""
        await self._store.write(
            partial(after_poll, app_id=app_id, phone=phone, now=self.clock, schedule=schedule)
        )

    async def give_up(
        self, app_id: str, *, give_up_after: float, schedule: Schedule
    ) -> CommitResult | None:
        """Commit ``receipt_missing`` for a batch of expired messages, marking them missing in
        the same transaction; None when none expired (or one resolved meanwhile: try again)."""
        now = self.clock
        sent_before = now - give_up_after
        expired = await self._store.read(
            partial(expired_messages, app_id=app_id, sent_before=sent_before, limit=GIVE_UP_BATCH)
        )
        if not expired:
            return None
        received_at = format_received_at(now)
        records: list[Record] = [
            receipt_missing_record(
                m.app_id,
                serial_no=m.serial_no,
                phone_number=m.phone,
                sent_at=m.sent_at,
                received_at=received_at,
            )
            for m in expired
        ]
        step = MessagesMissing(tuple(expired), given_up_at=now, schedule=schedule)
        try:
            return await self._store.commit(records, source="tracking", also=step)
        except MessageRacedError:  # rolled back whole; the next round reads afresh
            return None
