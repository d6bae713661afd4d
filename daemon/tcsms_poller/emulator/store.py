"""Everything the emulated account holds: messages, receipts, replies, conversions, statistics.

Each app keeps its receipts and replies twice over:

- as a **queue** in arrival order with a cursor, for the queue-mode actions: each record is
  handed out once, oldest first, and the time it was handed out is kept (for ``/truth``);
- in a **per-number index** sorted by time (``bisect``), for the by-number actions, which see
  every record regardless of the queue. The time is the receive or the send time, and a window
  answers ascending or descending, as ``by_number_time`` and ``by_number_order`` say (Tencent
  documents neither); a reply's send time is its reply time.

A receipt may first show as a *placeholder* (``PlaceholderRecord``: no ReportStatus yet, as the
SDK allows until the carrier has reported): queued like any receipt, and in the
per-number index at its send time until the final receipt replaces it there. It counts in no
statistics and ``/truth`` lists it apart, as ``pending_statuses``.

Hourly statistics are counted as records arrive, so a 32-day query costs 768 lookups, not a scan.
Beijing time is UTC+8 without daylight saving, so its hours start on UTC hour boundaries.
All methods are synchronous and run on the event loop's thread: no locking is needed.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from tcsms_poller.emulator.options import PendingStatus, WindowOrder, WindowTime
from tcsms_poller.emulator.outcomes import outcome_of
from tcsms_poller.tencent.models import STATISTICS_FIELDS

__all__ = [
    "ConversionRecord",
    "PlaceholderRecord",
    "ReplyRecord",
    "SendStatusRecord",
    "Store",
]

HOUR = 3600
SEND_LEAD = 3  # seconds from send to receipt, for a receipt given without its send time


@dataclass(frozen=True, slots=True)
class SendStatusRecord:
    """A delivery receipt as the account holds it."""

    app_id: str
    serial_no: str
    phone_number: str
    country_code: str
    subscriber_number: str
    report_status: str
    description: str
    user_receive_time: int
    session_context: str | None
    send_time: int | None = None  # when its message was sent; None: SEND_LEAD s before receipt

    @property
    def time(self) -> int:
        """When it was received: what the statistics hour (and one window reading) look at."""
        return self.user_receive_time

    @property
    def is_placeholder(self) -> bool:
        """Whether this is a receipt before the carrier reported (see ``placeholder``)."""
        return not self.report_status

    def placeholder(self, shown_as: PendingStatus = "empty") -> PlaceholderRecord:
        """This receipt as it shows before the carrier has reported: ReportStatus and
        Description empty, UserReceiveTime 0 (and ReportStatus shown ``shown_as``)."""
        final = {**asdict(self), "report_status": "", "description": "", "user_receive_time": 0}
        return PlaceholderRecord(**final, shown_as=shown_as)

    @property
    def sent(self) -> int:
        """When its message was sent: what the other window reading looks at."""
        return self.send_time if self.send_time is not None else self.user_receive_time - SEND_LEAD

    def to_api(self) -> dict[str, Any]:
        """The item of ``PullSmsSendStatusSet``."""
        return {
            "SerialNo": self.serial_no,
            "PhoneNumber": self.phone_number,
            "CountryCode": self.country_code,
            "SubscriberNumber": self.subscriber_number,
            "ReportStatus": self.report_status,
            "Description": self.description,
            "UserReceiveTime": self.user_receive_time,
            # Tencent's example answers "" for a message sent without one.
            "SessionContext": "" if self.session_context is None else self.session_context,
        }


@dataclass(frozen=True, slots=True)
class PlaceholderRecord(SendStatusRecord):
    """A receipt before the carrier reported; its ReportStatus shows as ``""`` (``empty``),
    ``null``, or not at all (``absent``): the SDK says only that it is present once reported."""

    shown_as: PendingStatus = "empty"

    def show_status(self, item: dict[str, Any], key: str) -> dict[str, Any]:
        """``item`` with its status field ``key`` shown as ``shown_as``."""
        if self.shown_as == "null":
            item[key] = None
        elif self.shown_as == "absent":
            del item[key]
        return item

    def to_api(self) -> dict[str, Any]:
        """The item of ``PullSmsSendStatusSet``."""
        return self.show_status(SendStatusRecord.to_api(self), "ReportStatus")


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """A user's reply (MO) as the account holds it."""

    app_id: str
    phone_number: str
    country_code: str
    subscriber_number: str
    sign_name: str
    reply_content: str
    reply_time: int
    extend_code: str

    @property
    def time(self) -> int:
        """When it happened: what the by-number window looks at."""
        return self.reply_time

    @property
    def sent(self) -> int:
        """A reply is sent when it is made: both window readings see its reply time."""
        return self.reply_time

    def to_api(self) -> dict[str, Any]:
        """The item of ``PullSmsReplyStatusSet``."""
        return {
            "PhoneNumber": self.phone_number,
            "CountryCode": self.country_code,
            "SubscriberNumber": self.subscriber_number,
            "SignName": self.sign_name,
            "ReplyContent": self.reply_content,
            "ReplyTime": self.reply_time,
            "ExtendCode": self.extend_code,
        }


@dataclass(frozen=True, slots=True)
class ConversionRecord:
    """A conversion reported with ``ReportConversion``."""

    app_id: str
    serial_no: str
    conversion_time: int | None
    reported_at: float


class _Timed(Protocol):
    @property
    def time(self) -> int: ...

    @property
    def sent(self) -> int: ...

    def to_api(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=_Timed)


@dataclass(slots=True)
class _Queue(Generic[R]):
    """Records in arrival order; everything before ``cursor`` has been handed out."""

    items: list[R] = field(default_factory=list)
    handed_out_at: list[float | None] = field(default_factory=list)
    cursor: int = 0

    def append(self, record: R) -> None:
        self.items.append(record)
        self.handed_out_at.append(None)

    def take(self, limit: int, now: float) -> list[R]:
        """Hand out up to ``limit`` records not handed out before, oldest first."""
        end = min(self.cursor + limit, len(self.items))
        taken = self.items[self.cursor : end]
        for index in range(self.cursor, end):
            self.handed_out_at[index] = now
        self.cursor = end
        return taken

    def __iter__(self) -> Iterator[tuple[R, float | None]]:
        return zip(self.items, self.handed_out_at, strict=True)


@dataclass(slots=True)
class _TimeIndex(Generic[R]):
    """One number's records sorted by one of their times; equal times keep their arrival order."""

    times: list[int] = field(default_factory=list)
    items: list[R] = field(default_factory=list)

    def add(self, record: R, time: int) -> None:
        position = bisect.bisect_right(self.times, time)
        self.times.insert(position, time)
        self.items.insert(position, record)

    def remove(self, record: R, at: int) -> None:
        """Take out ``record``, indexed at ``at``."""
        low = bisect.bisect_left(self.times, at)
        high = bisect.bisect_right(self.times, at)
        position = next(i for i in range(low, high) if self.items[i] is record)
        del self.times[position], self.items[position]

    def window(self, begin: int, end: int, limit: int, order: WindowOrder) -> list[R]:
        """The first ``limit`` records with ``begin <= time <= end`` in ``order``."""
        low = bisect.bisect_left(self.times, begin)
        high = bisect.bisect_right(self.times, end)
        if order is WindowOrder.DESC:
            return self.items[max(low, high - limit) : high][::-1]
        return self.items[low : min(high, low + limit)]


@dataclass(slots=True)
class _Records(Generic[R]):
    """One kind of record of one app: the queue and the per-number index."""

    queue: _Queue[R] = field(default_factory=_Queue)
    by_number: defaultdict[str, _TimeIndex[R]] = field(
        default_factory=lambda: defaultdict(_TimeIndex)
    )


class _App:
    """What one SdkAppId holds."""

    def __init__(self) -> None:
        self.statuses: _Records[SendStatusRecord] = _Records()
        self.replies: _Records[ReplyRecord] = _Records()
        self.sent: set[str] = set()  # every SerialNo this app ever sent
        self.hours: defaultdict[int, Counter[str]] = defaultdict(Counter)
        # SerialNo -> (placeholder, its time in the per-number index), until the final receipt
        self.placeholders: dict[str, tuple[PlaceholderRecord, int]] = {}


class Store:
    """The emulated account's data for a fixed set of apps."""

    def __init__(
        self,
        app_ids: tuple[str, ...],
        *,
        window_time: WindowTime = WindowTime.RECEIVE,
        order: WindowOrder = WindowOrder.ASC,
    ) -> None:
        self._apps = {app_id: _App() for app_id in app_ids}
        self.conversions: list[ConversionRecord] = []
        self._by_send_time = window_time is WindowTime.SEND
        self._order = order

    def _window_time(self, record: _Timed) -> int:
        return record.sent if self._by_send_time else record.time

    def has_app(self, app_id: str) -> bool:
        """Whether ``app_id`` belongs to this account."""
        return app_id in self._apps

    def record_send(self, app_id: str, serial_no: str, sent_at: int) -> None:
        """A message was accepted for delivery (``RequestSuccessCount``; a known SerialNo)."""
        app = self._apps[app_id]
        app.sent.add(serial_no)
        app.hours[sent_at // HOUR * HOUR]["RequestSuccessCount"] += 1

    def is_sent(self, app_id: str, serial_no: str) -> bool:
        """Whether ``serial_no`` is a message this app sent."""
        return serial_no in self._apps[app_id].sent

    def add_send_status(self, record: SendStatusRecord) -> None:
        """A receipt arrived; a receipt of an unknown message counts as sent at that time."""
        app = self._apps[record.app_id]
        if record.serial_no not in app.sent:
            self.record_send(record.app_id, record.serial_no, record.user_receive_time)
        app.statuses.queue.append(record)
        app.statuses.by_number[record.phone_number].add(record, self._window_time(record))
        held = app.placeholders.pop(record.serial_no, None)
        if held is not None:  # the final receipt takes the placeholder's place in the index
            placeholder, at = held
            app.statuses.by_number[placeholder.phone_number].remove(placeholder, at)
        counters = app.hours[record.user_receive_time // HOUR * HOUR]
        counters["CallbackCount"] += 1
        if record.report_status == "SUCCESS":
            counters["CallbackSuccessCount"] += 1
        else:
            counters["CallbackFailCount"] += 1
            counters[outcome_of("FAIL", record.description).bucket] += 1

    def add_placeholder(self, record: PlaceholderRecord, sent_at: int) -> None:
        """A receipt shows before the carrier reported: queued, and by number at ``sent_at``."""
        app = self._apps[record.app_id]
        if record.serial_no not in app.sent:
            self.record_send(record.app_id, record.serial_no, sent_at)
        app.statuses.queue.append(record)
        app.statuses.by_number[record.phone_number].add(record, sent_at)
        app.placeholders[record.serial_no] = (record, sent_at)

    def add_reply(self, record: ReplyRecord) -> None:
        """A reply arrived."""
        replies = self._apps[record.app_id].replies
        replies.queue.append(record)
        replies.by_number[record.phone_number].add(record, self._window_time(record))

    def add_conversion(self, record: ConversionRecord) -> None:
        """A conversion was reported."""
        self.conversions.append(record)

    def take_send_statuses(self, app_id: str, limit: int, now: float) -> list[SendStatusRecord]:
        """Queue mode: receipts never handed out before, oldest first."""
        return self._apps[app_id].statuses.queue.take(limit, now)

    def take_replies(self, app_id: str, limit: int, now: float) -> list[ReplyRecord]:
        """Queue mode: replies never handed out before, oldest first."""
        return self._apps[app_id].replies.queue.take(limit, now)

    def send_statuses_of(
        self, app_id: str, number: str, begin: int, end: int, limit: int
    ) -> list[SendStatusRecord]:
        """Receipts of one number whose window time is in ``[begin, end]``, a page of them."""
        index = self._apps[app_id].statuses.by_number.get(number)
        return [] if index is None else index.window(begin, end, limit, self._order)

    def replies_of(
        self, app_id: str, number: str, begin: int, end: int, limit: int
    ) -> list[ReplyRecord]:
        """Replies of one number with ``begin <= ReplyTime <= end``, a page of them."""
        index = self._apps[app_id].replies.by_number.get(number)
        return [] if index is None else index.window(begin, end, limit, self._order)

    def statistics(self, app_id: str, first: int, last: int) -> dict[str, int]:
        """Counters over the hours from the one holding ``first`` to the one holding ``last``."""
        hours = self._apps[app_id].hours
        total: Counter[str] = Counter()
        for hour in range(first // HOUR * HOUR, last // HOUR * HOUR + 1, HOUR):
            total.update(hours.get(hour, Counter()))
        return {name: total[name] for _, name in STATISTICS_FIELDS}

    def truth(self) -> dict[str, Any]:
        """Everything held, for tests to compare with what a client collected."""
        statuses: list[dict[str, Any]] = []
        placeholders: list[dict[str, Any]] = []
        replies: list[dict[str, Any]] = []
        for app in self._apps.values():
            for record, at in app.statuses.queue:
                held = placeholders if record.is_placeholder else statuses
                held.append({**asdict(record), "handed_out_at": at})
            replies.extend(
                {**asdict(record), "handed_out_at": at} for record, at in app.replies.queue
            )
        return {
            "messages_sent": sum(len(app.sent) for app in self._apps.values()),
            "send_statuses": statuses,
            "pending_statuses": placeholders,
            "replies": replies,
            "conversions": [asdict(record) for record in self.conversions],
        }
