"""What the daemon asks of its durable state, role by role, in records and domain values.

Every backend (``store.py``: SQLite, embedded, the default; ``postgres/``: shared) implements
``StateStore``, the union of the roles below. Callers hold the whole store but speak to one role
at a time, and never see a connection or a transaction: a step that must commit together with a
page of records is a ``Change`` value handed to ``Outbox.commit``.

The guarantees every backend gives (``tests/state/test_contract.py`` checks them on each):

- ``commit`` is all or nothing: the new records, their seen ids, the quarantined items and the
  ``Change`` are durable together when it returns, or none of them is and it raises
  ``StateError``. Concurrent commits fail alone.
- An id seen within ``dedupe_ttl`` is a duplicate, across commits, restarts and writers.
- Outbox seqs grow in the order commits become visible: a reader that asks for the rows after
  its cursor never skips one that commits later, and never gets one twice.
- A sink's cursor never moves back; ``purge`` keeps every row some sink has not acknowledged.
- A sink's dead letters are durable when ``DeadLetters.write`` returns, before the cursor moves
  past them; ``tests/sinks/test_dead_letters.py`` checks both kinds (files, the database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from tcsms_poller.records import OutboxRecord, Record

if TYPE_CHECKING:
    from tcsms_poller.state.messages import NewMessage, Resolved, Schedule, TrackedMessage

__all__ = [
    "Change",
    "CommitResult",
    "ConversionQueue",
    "ConversionReported",
    "DeadLetter",
    "DeadLetters",
    "Fence",
    "LeaseLostError",
    "MessageTables",
    "MessagesMissing",
    "MessagesPolled",
    "NumberClaim",
    "NumberClaims",
    "NumberOrigin",
    "NumberPolled",
    "Outbox",
    "PendingConversion",
    "Purged",
    "Rejected",
    "SinkCursor",
    "SinkCursors",
    "StateError",
    "StateStore",
    "TrackedMessages",
    "TrackedNumber",
    "TrackedNumbers",
    "WorkerStates",
]

NumberOrigin = str  # "config" | "file" | "api"


class StateError(Exception):
    """The state database failed (disk full, read-only, corrupt, unreachable); nothing was
    half-written."""


class LeaseLostError(StateError):
    """A write guarded by a cluster lease was refused: another instance holds the lease now
    (``cluster/leases.py``). Nothing of the write was committed; retrying cannot help."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a write depends on, as this instance last held it: the write commits only if
    the lease still names this holder and token, checked in the write's own transaction."""

    lease: str
    holder: str
    token: int


@dataclass(frozen=True, slots=True)
class NumberClaim:
    """One poller's claim on a phone number of an app (cluster mode): granted by the database to
    ``holder`` with ``token``; a commit that carries it succeeds only while the claim is still
    this one (``NumberClaims``)."""

    app_id: str
    phone: str
    holder: str
    token: int


# -- values ------------------------------------------------------------------------------------


class Rejected(Protocol):
    """An upstream item that could not be parsed: kept verbatim, with why."""

    @property
    def raw(self) -> Any: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one commit did: the records that were new, how many were duplicates, and the
    tracked messages their receipts resolved."""

    new: tuple[Record, ...]
    duplicates: int
    resolved: tuple[Resolved, ...] = ()


@dataclass(frozen=True, slots=True)
class NumberPolled:
    """A number's page was polled: its next due time and cursors (a cursor never moves back;
    None leaves it as it is)."""

    app_id: str
    phone: str
    next_due: float
    polled_at: float
    status_cursor: int | None = None
    reply_cursor: int | None = None
    claim: NumberClaim | None = None  # cluster mode: the commit is fenced by it


@dataclass(frozen=True, slots=True)
class ConversionReported:
    """A queued conversion was reported: it leaves the queue with its outcome record."""

    conversion_id: int


@dataclass(frozen=True, slots=True)
class MessagesPolled:
    """A number of tracked messages was polled: it is due again at its pending messages' next
    poll time, or dropped when none is pending."""

    app_id: str
    phone: str
    polled_at: float
    schedule: Schedule
    claim: NumberClaim | None = None  # cluster mode: the commit is fenced by it


@dataclass(frozen=True, slots=True)
class MessagesMissing:
    """Tracked messages given up on: marked missing with their ``receipt_missing`` records. The
    commit fails whole (``MessageRacedError``) if one of them was resolved meanwhile."""

    messages: tuple[TrackedMessage, ...]
    given_up_at: float
    schedule: Schedule
    claims: tuple[NumberClaim, ...] = ()  # cluster mode: their numbers', fencing the commit


Change = NumberPolled | ConversionReported | MessagesPolled | MessagesMissing


@dataclass(frozen=True, slots=True)
class SinkCursor:
    """How far a sink has acknowledged, and its own committed position (e.g. a file offset)."""

    acked_seq: int
    position: Mapping[str, Any] | None
    created: bool = False  # this call created it: a sink new to the state, at the head


@dataclass(frozen=True, slots=True)
class TrackedNumber:
    """One tracked number and where its polling stands."""

    app_id: str
    phone: str
    origin: NumberOrigin
    expires_at: float | None
    status_cursor: int | None
    reply_cursor: int | None
    next_due: float
    last_polled_at: float | None


@dataclass(frozen=True, slots=True)
class PendingConversion:
    """A conversion not yet reported (or whose report failed transiently)."""

    id: int
    app_id: str
    serial_no: str
    conversion_time: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record a sink refused for good: when, why, and the record."""

    dead_lettered_at: datetime  # to the millisecond, UTC
    reason: str
    record_id: str
    data: bytes  # the record, compact JSON as the outbox held it


@dataclass(frozen=True, slots=True)
class Purged:
    """What ``DeadLetters.purge`` removed (or, in a dry run, would remove) of a sink's dead
    letters, how many are left, and how many of those it selected but kept as queued for
    replay."""

    removed: int
    kept: int
    held: int  # selected but held back: queued for replay


# -- roles -------------------------------------------------------------------------------------


class Outbox(Protocol):
    """Seen ids and the outbox: where every record enters, once."""

    async def commit(
        self,
        records: Sequence[Record],
        *,
        rejected: Sequence[Rejected] = (),
        source: str = "",
        also: Change | None = None,
        fence: Fence | None = None,
    ) -> CommitResult:
        """Dedupe ``records`` into the outbox, quarantine ``rejected`` and apply ``also``, in
        one transaction; then wake the sink drainers.

        With ``fence`` (cluster mode only: records re-read under a lease, the hourly
        statistics), ``LeaseLostError`` and nothing committed once the lease is gone. A queue
        page carries none: Tencent hands it out once, so it is always committed.
        """
        ...

    @property
    def head(self) -> int:
        """The seq of the newest record this process knows committed."""
        ...

    async def wait_for_commit(self, after: int) -> None:
        """Return once a record newer than ``after`` is committed (at once if one is)."""
        ...


class SinkCursors(Protocol):
    """Each sink's acknowledged position in the outbox."""

    async def sink_cursor(self, name: str) -> SinkCursor:
        """The sink's cursor (created at the current head for a new sink)."""
        ...

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` records after ``after``, in seq order."""
        ...

    async def ack(
        self,
        name: str,
        *,
        seq: int,
        position: Mapping[str, Any] | None,
        fence: Fence | None = None,
    ) -> None:
        """Advance the sink's cursor to ``seq`` (never back); ``position`` None keeps the last.

        With ``fence`` (cluster mode only), ``LeaseLostError`` and no change once the lease is gone.
        """
        ...

    async def forget_removed_sinks(self, sink_names: Sequence[str]) -> list[str]:
        """Drop the cursors of sinks not configured that have not acked for ``dedupe_ttl``."""
        ...

    async def forget_sink(self, name: str, *, acked_seq: int) -> None:
        """Drop the sink's cursor at once if it is still at ``acked_seq``: one created for a sink
        a reload then did not add. Once an ack moved it (another instance of a cluster added the
        same sink and drains it already), it stays."""
        ...


class TrackedNumbers(Protocol):
    """The numbers polled one by one, scheduled by their next due time."""

    async def sync_numbers(
        self, app_id: str, origin: NumberOrigin, phones: Sequence[str]
    ) -> tuple[int, int]:
        """Make the numbers of ``origin`` (config or file) exactly ``phones``: (added, removed)."""
        ...

    async def track_number(self, app_id: str, phone: str, *, track_for: float) -> bool:
        """Track ``phone`` for ``track_for`` seconds from now; True if newly tracked."""
        ...

    async def untrack_number(self, app_id: str, phone: str) -> bool:
        """Stop tracking ``phone``; whether it was tracked."""
        ...

    async def due_numbers(
        self, app_id: str, *, limit: int, skip: frozenset[str] = frozenset()
    ) -> tuple[float | None, list[TrackedNumber]]:
        """The app's earliest due time and up to ``limit`` most overdue numbers not in ``skip``."""
        ...

    async def reschedule_number(
        self, app_id: str, phone: str, *, delay: float, claim: NumberClaim | None = None
    ) -> None:
        """Make a number due again ``delay`` seconds from now, cursors unchanged (fenced by
        ``claim``, the failed poll's, in cluster mode)."""
        ...

    async def list_numbers(
        self, *, app_id: str | None = None, after: tuple[str, str] | None = None, limit: int = 100
    ) -> list[TrackedNumber]:
        """A page of tracked numbers in (app, phone) order."""
        ...

    async def number_counts(self) -> dict[str, tuple[int, float]]:
        """Per app: how many numbers are tracked and the largest overdue time."""
        ...


class ConversionQueue(Protocol):
    """Conversions waiting to be reported to Tencent."""

    async def enqueue_conversions(self, items: Sequence[tuple[str, str, int | None]]) -> None:
        """Queue ``(app_id, serial_no, conversion_time)`` items durably."""
        ...

    async def lease_conversions(self, *, limit: int, lease: float) -> list[PendingConversion]:
        """Due conversions, leased for ``lease`` seconds."""
        ...

    async def defer_conversion(self, conversion_id: int, *, delay: float, error: str) -> None:
        """Retry a conversion after ``delay`` seconds."""
        ...

    async def pending_conversions(self) -> int:
        """How many conversions wait to be reported."""
        ...


class WorkerStates(Protocol):
    """Each worker's health, kept for ``status`` (another process)."""

    async def save_worker_state(
        self, name: str, *, healthy: bool, error: str | None, last_success_at: float | None
    ) -> None:
        """Persist a worker's health (``last_success_at`` None keeps the previous one)."""
        ...


class TrackedMessages(Protocol):
    """Sent messages tracked until their receipt (``docs/tracking.md``).

    A message resolves inside the ``Outbox.commit`` that brings its receipt, by any path (the
    ``resolved`` of its ``CommitResult``); ``give_up`` commits the ``receipt_missing`` records of
    expired messages in the transaction that marks them missing, exactly once. In a cluster a
    write about a number is fenced by the claim on it (``NumberClaims``). Every backend
    keeps them: ``state.message_store.tracked_messages`` makes this role of a store's
    ``MessageTables``.
    """

    async def track(self, messages: Sequence[NewMessage], *, schedule: Schedule) -> list[bool]:
        """Track ``messages`` (idempotent); for each, whether it was new."""
        ...

    async def get(self, serial_no: str) -> TrackedMessage | None:
        """One tracked message by SerialNo, or None."""
        ...

    async def pending_counts(self) -> dict[str, int]:
        """Pending messages per app."""
        ...

    async def due(
        self, app_id: str, *, limit: int, skip: frozenset[str]
    ) -> tuple[float | None, list[tuple[str, float, int]]]:
        """The app's earliest due time and its due numbers: (phone, next_due, oldest sent_at)."""
        ...

    def polled(self, app_id: str, phone: str, *, schedule: Schedule) -> MessagesPolled:
        """The ``Change`` for the commit of a page of ``phone``: reschedule it, or drop it."""
        ...

    async def reschedule(
        self, app_id: str, phone: str, *, schedule: Schedule, claim: NumberClaim | None = None
    ) -> None:
        """A failed poll: the number is due at its messages' next poll time (fenced by
        ``claim``, the poll's, in cluster mode)."""
        ...

    async def expired(self, app_id: str, *, give_up_after: float) -> list[TrackedMessage]:
        """A batch of the app's messages still pending ``give_up_after`` their send."""
        ...

    async def give_up(
        self,
        messages: Sequence[TrackedMessage],
        *,
        schedule: Schedule,
        claims: Sequence[NumberClaim] = (),
    ) -> CommitResult | None:
        """Commit ``receipt_missing`` for ``messages`` (of ``expired``), fenced by ``claims``
        (cluster mode: those of their numbers); None when there are none (or one resolved
        meanwhile: read them again)."""
        ...


class MessageTables(Protocol):
    """A backend's tables of tracked messages, each call one transaction (or one read);
    ``message_store.MessageStore`` makes the ``TrackedMessages`` role of them, with the clock.
    Resolving, rescheduling (after a page or a failed poll) and giving up run inside
    ``Outbox.commit`` (the ``resolved`` of its result; ``MessagesPolled``, ``MessagesMissing``),
    where a cluster's claims fence them."""

    async def add_messages(
        self, messages: Sequence[NewMessage], *, now: float, schedule: Schedule
    ) -> list[bool]:
        """Track ``messages`` (idempotent); for each, whether it was new."""
        ...

    async def get_message(self, serial_no: str) -> TrackedMessage | None:
        """One tracked message by SerialNo, or None."""
        ...

    async def message_counts(self) -> dict[str, int]:
        """Pending messages per app."""
        ...

    async def due_message_numbers(
        self, app_id: str, *, now: float, limit: int, skip: frozenset[str]
    ) -> tuple[float | None, list[tuple[str, float, int]]]:
        """The app's earliest due time and its due numbers: (phone, next_due, oldest sent_at)."""
        ...

    async def expired_messages(
        self, app_id: str, *, sent_before: float, limit: int
    ) -> list[TrackedMessage]:
        """Up to ``limit`` pending messages of the app sent before ``sent_before``."""
        ...


class NumberClaims(Protocol):
    """One poller at a time per phone number of an app, whatever worker polls it (cluster mode:
    several daemons on one PostgreSQL state; a SQLite state has one daemon and no claims).

    A claim is a row keyed by ``(app_id, phone)`` with a holder, a token and an expiry on the
    database's clock. ``claim_numbers`` takes the numbers that are free or whose claim expired
    (never one held by anyone, the claimer included); ``renew_numbers`` extends the claims still
    held as granted; ``release_numbers`` ends them when the poll is over. A ``Change`` carrying
    a claim (``NumberPolled.claim``, ``MessagesPolled.claim``) commits only while the number is
    still claimed with that holder and token, checked in the commit's own transaction:
    otherwise ``LeaseLostError`` and nothing of the commit is written. The claimer must stop
    sending before the claim can expire (``cluster/claims.py`` keeps that local deadline).
    """

    async def claim_numbers(
        self, app_id: str, phones: Sequence[str], *, holder: str, ttl: float
    ) -> list[NumberClaim]:
        """Claim each free (or expired) number of ``phones`` for ``ttl`` seconds; those won."""
        ...

    async def renew_numbers(
        self, claims: Sequence[NumberClaim], *, ttl: float
    ) -> list[NumberClaim]:
        """Extend the claims still held as granted for ``ttl`` seconds; those extended."""
        ...

    async def release_numbers(self, claims: Sequence[NumberClaim]) -> None:
        """End claims (their polls are over); one that passed on is left alone."""
        ...


class DeadLetters(Protocol):
    """The dead letters of one sink, its replay queue, and the ids of replays it acknowledged.

    Two kinds: files beside a SQLite state (``sinks/deadletter.py``), one daemon's; tables of a
    PostgreSQL state (``state/postgres/deadletters.py``), which any instance of a cluster lists
    and replays, and whose sink's lease holder delivers. Either way:

    - ``write`` is durable when it returns, so the drainer moves the cursor past a dead-lettered
      batch only after it; with ``fence`` (cluster mode) it writes nothing once the sink's lease
      passed on (``LeaseLostError``).
    - ``enqueue`` queues only records neither queued nor acknowledged as replayed, so replaying
      twice queues nothing twice; ``finish`` takes a delivered (or refused again) batch out of
      the queue, remembering its ids if acknowledged.
    - ``purge`` is the only way dead letters go: it leaves alone those queued for replay, and
      the ids it forgets belong to no dead letter, so a later ``enqueue`` queues the same.
    - Failures raise ``OSError`` (files) or ``StateError`` (database), nothing half-written.
    """

    @property
    def log_fields(self) -> Mapping[str, str]:
        """Where they are kept, for log events (a path, or a table)."""
        ...

    async def write(
        self,
        batch: Sequence[OutboxRecord],
        *,
        reason: str,
        now: float,
        fence: Fence | None = None,
    ) -> None:
        """Keep every record of ``batch`` with ``reason``, durably."""
        ...

    async def letters(self, *, since: datetime | None = None) -> list[DeadLetter]:
        """The dead letters, oldest first; with ``since``, those dead-lettered since then."""
        ...

    async def replayed_ids(self) -> set[str]:
        """Ids of replayed records the sink acknowledged."""
        ...

    async def queued(self, *, limit: int | None = None) -> list[OutboxRecord]:
        """The records queued for replay, in order (``seq`` 0: they are not in the outbox)."""
        ...

    async def enqueue(self, letters: Sequence[DeadLetter]) -> tuple[int, int]:
        """Queue the records of ``letters`` still dead-lettered (a purge since they were read
        may have removed them: those are skipped), not acknowledged and not queued already;
        (queued, skipped)."""
        ...

    async def finish(
        self, batch: Sequence[OutboxRecord], *, acknowledged: bool, fence: Fence | None = None
    ) -> None:
        """Take ``batch`` (the head of the queue) out of the queue; remember its ids if
        ``acknowledged`` (a batch refused again was written as dead letters once more)."""
        ...

    async def purge(
        self,
        *,
        before: datetime | None = None,
        replayed: bool = False,
        dry_run: bool = False,
        delivered: bool = True,
    ) -> Purged:
        """Remove the dead letters written before ``before`` (all without it), with
        ``replayed`` only those whose record a replay delivered, never one whose record is
        queued for replay (it stays until its replay is finished); then forget acknowledged
        ids no dead letter has any more. Safe beside a running daemon. ``dry_run``: count
        only, change nothing. Without ``delivered`` (a sink no longer configured: no drainer
        delivers its replay queue) the queue is removed too and holds nothing back."""
        ...

    async def wait_for_replay(self) -> None:
        """Return once another process may have queued records (the files: never, a running
        daemon hears of a replay by SIGHUP; the database: when its queue is not empty)."""
        ...


class StateStore(Outbox, SinkCursors, TrackedNumbers, ConversionQueue, WorkerStates, Protocol):
    """The whole durable state of a daemon: every role, housekeeping and the lifecycle."""

    def message_tables(self) -> MessageTables:
        """The tables of tracked messages (``TrackedMessages`` is made of them)."""
        ...

    def dead_letters(self, sink: str) -> DeadLetters:
        """The dead letters of ``sink``: files beside a SQLite state, tables of a shared one."""
        ...

    async def purge(self, sink_names: Sequence[str]) -> tuple[int, int, int]:
        """Delete a batch of expired ids, fully acknowledged rows and expired numbers."""
        ...

    async def snapshot(self) -> dict[str, Any]:
        """Everything ``status`` shows (see ``state/status.py``)."""
        ...

    def write_stalled_for(self) -> float:
        """Seconds the oldest write in progress has taken so far (0 when none is running)."""
        ...

    async def aclose(self) -> None:
        """Close the connections (after the last write)."""
        ...
