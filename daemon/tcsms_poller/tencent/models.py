"""Typed results of the six actions, parsed from Tencent's JSON without trusting it.

Queue-mode answers exist once only, so one bad item must not cost the whole page: items that
cannot be parsed come back in ``Page.rejected`` with the reason (the caller quarantines them
durably), while an answer whose overall shape is wrong raises ``MalformedResponseError``.

A receipt is final only with ``ReportStatus`` ``SUCCESS`` or ``FAIL`` (any case, normalized to
upper case). Tencent leaves it out until the carrier has reported, so an item without one (empty,
null or absent) is *pending*: not a receipt, only counted in ``Page.pending``, never delivered nor
marked seen, so the final receipt with the same SerialNo still gets through. Any other value is
not something we understand, and the item is rejected (kept, for an operator to look at).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar

from tcsms_poller.tencent.errors import MalformedResponseError

__all__ = [
    "STATISTICS_FIELDS",
    "CallbackStatistics",
    "ConversionStatus",
    "ItemError",
    "Page",
    "PendingReceiptError",
    "RejectedItem",
    "ReplyStatus",
    "SendStatus",
    "final_report_status",
    "parse_conversion",
    "parse_items",
    "parse_replies",
    "parse_send_statuses",
    "parse_statistics",
]

T = TypeVar("T")


class ItemError(ValueError):
    """One item of a page is unusable."""


class PendingReceiptError(Exception):
    """The item has no final ``ReportStatus`` yet: skip it, a later pull or push brings it."""


class SendStatus(NamedTuple):
    """A delivery receipt (``PullSmsSendStatus``).

    This and ``ReplyStatus`` are named tuples rather than frozen dataclasses: one is built for
    every item pulled or pushed, and a frozen dataclass costs twice as much to build.
    """

    serial_no: str
    phone_number: str
    country_code: str
    subscriber_number: str
    report_status: str
    description: str
    user_receive_time: int
    session_context: str | None


class ReplyStatus(NamedTuple):
    """A user's reply (``PullSmsReplyStatus``); Tencent gives it no id of its own."""

    phone_number: str
    country_code: str
    subscriber_number: str
    sign_name: str
    reply_content: str
    reply_time: int
    extend_code: str


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """An item we could not parse, kept verbatim so nothing disappears silently."""

    raw: Any
    reason: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """The parsed items of one answer, those that could not be parsed, and how many receipts
    had no final status yet (see the module docstring)."""

    items: tuple[T, ...]
    rejected: tuple[RejectedItem, ...] = ()
    pending: int = 0

    @property
    def size(self) -> int:
        """How many items the answer held, whatever became of them: a full page is ``Limit``."""
        return len(self.items) + len(self.rejected) + self.pending


# Field name in our record -> Tencent's name, in the order of the statistics record.
STATISTICS_FIELDS: tuple[tuple[str, str], ...] = (
    ("callback_count", "CallbackCount"),
    ("request_success_count", "RequestSuccessCount"),
    ("callback_fail_count", "CallbackFailCount"),
    ("callback_success_count", "CallbackSuccessCount"),
    ("internal_error_count", "InternalErrorCount"),
    ("invalid_number_count", "InvalidNumberCount"),
    ("shutdown_error_count", "ShutdownErrorCount"),
    ("black_list_count", "BlackListCount"),
    ("frequency_limit_count", "FrequencyLimitCount"),
)


@dataclass(frozen=True, slots=True)
class CallbackStatistics:
    """Receipt counters over a range of hours; ``counters`` follows ``STATISTICS_FIELDS``."""

    counters: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ConversionStatus:
    """Tencent's verdict on one reported conversion (``Code`` "ok" means accepted)."""

    code: str
    message: str

    @property
    def is_ok(self) -> bool:
        """Tencent spells success ``ok``; compare without case to be safe."""
        return self.code.lower() == "ok"


def _text(item: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = item.get(key)
    if type(value) is str:  # the usual case first: this runs for every field of every item
        return value
    if value is None:
        if required:
            raise ItemError(f"{key} is missing")
        return ""
    if type(value) is int:
        return str(value)
    raise ItemError(f"{key} is {type(value).__name__}, not a string")


def _required(item: Mapping[str, Any], key: str) -> str:
    """A text that identifies the item: present and not empty."""
    value = _text(item, key, required=True)
    if not value:
        raise ItemError(f"{key} is empty")
    return value


def _int(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    if type(value) is int:  # exactly int: a bool is not a time
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ItemError(f"{key} is {value!r}, not a UNIX time")


FINAL_REPORT_STATUSES = frozenset({"SUCCESS", "FAIL"})


def final_report_status(value: object, *, key: str = "ReportStatus") -> str:
    """``SUCCESS`` or ``FAIL`` from any spelling of them; raises ``PendingReceiptError`` for no
    status yet (empty, null, absent) and ``ItemError`` for anything else."""
    if value is None or value == "":
        raise PendingReceiptError
    if isinstance(value, str) and value.isascii():  # "\u017fuccess".upper() is SUCCESS too
        upper = value.upper()
        if upper in FINAL_REPORT_STATUSES:
            return upper
    raise ItemError(f"{key} {value!r} is neither SUCCESS nor FAIL")


# Tencent's keys in field order, and the shapes (value types) a well-formed item has.
_SEND_STATUS_KEYS = (
    "SerialNo",
    "PhoneNumber",
    "CountryCode",
    "SubscriberNumber",
    "ReportStatus",
    "Description",
    "UserReceiveTime",
    "SessionContext",
)
_SEND_STATUS_TYPES = ((str,) * 6 + (int, str), (str,) * 6 + (int, type(None)))
_REPLY_KEYS = (
    "PhoneNumber",
    "CountryCode",
    "SubscriberNumber",
    "SignName",
    "ReplyContent",
    "ReplyTime",
    "ExtendCode",
)
_REPLY_TYPES = ((str,) * 5 + (int, str),)


# Nearly every item is well formed: checking all its types at once costs a third of checking
# field by field, which is left for the rest (to convert, reject or skip as pending, one field
# at a time). A well-formed item's values become the named tuple in C, without the Python-level
# ``_make``. A well-formed receipt is also final, in Tencent's upper case; an empty
# SessionContext (Tencent's way of saying none) becomes None, as a push without one does.
_new_send_status = partial(tuple.__new__, SendStatus)
_new_reply = partial(tuple.__new__, ReplyStatus)


def _send_status(item: Mapping[str, Any]) -> SendStatus:
    values = tuple(map(item.get, _SEND_STATUS_KEYS))
    if (
        tuple(map(type, values)) in _SEND_STATUS_TYPES
        and values[4] in FINAL_REPORT_STATUSES
        and values[0]
        and values[1]
    ):
        if values[7] == "":
            values = (*values[:7], None)
        return _new_send_status(values)
    return _checked_send_status(item)


def _checked_send_status(item: Mapping[str, Any]) -> SendStatus:
    serial_no = _required(item, "SerialNo")
    phone_number = _required(item, "PhoneNumber")
    country_code = _text(item, "CountryCode")
    subscriber_number = _text(item, "SubscriberNumber")
    report_status = final_report_status(item.get("ReportStatus"))  # pending: no time to check
    return SendStatus(
        serial_no=serial_no,
        phone_number=phone_number,
        country_code=country_code,
        subscriber_number=subscriber_number,
        report_status=report_status,
        description=_text(item, "Description"),
        user_receive_time=_int(item, "UserReceiveTime"),
        session_context=_text(item, "SessionContext") or None,
    )


def _reply(item: Mapping[str, Any]) -> ReplyStatus:
    values = tuple(map(item.get, _REPLY_KEYS))
    if tuple(map(type, values)) in _REPLY_TYPES and values[0]:
        return _new_reply(values)
    return _checked_reply(item)


def _checked_reply(item: Mapping[str, Any]) -> ReplyStatus:
    return ReplyStatus(
        phone_number=_required(item, "PhoneNumber"),
        country_code=_text(item, "CountryCode"),
        subscriber_number=_text(item, "SubscriberNumber"),
        sign_name=_text(item, "SignName"),
        reply_content=_text(item, "ReplyContent"),
        reply_time=_int(item, "ReplyTime"),
        extend_code=_text(item, "ExtendCode"),
    )


def _page(
    response: Mapping[str, Any], key: str, parse: Callable[[Mapping[str, Any]], T]
) -> Page[T]:
    items = response.get(key)
    if items is None:  # Tencent answers null for "nothing new"
        return Page(())
    if not isinstance(items, list):
        raise MalformedResponseError("MalformedResponse", f"{key} is not an array")
    return parse_items(items, parse)


def parse_items(items: list[Any], parse: Callable[[Mapping[str, Any]], T]) -> Page[T]:
    """Parse each item on its own: one unusable or pending item costs only itself."""
    parsed: list[T] = []
    rejected: list[RejectedItem] = []
    pending = 0
    for item in items:
        try:
            if not isinstance(item, dict):
                raise ItemError(f"item is {type(item).__name__}, not an object")
            parsed.append(parse(item))
        except ItemError as error:
            rejected.append(RejectedItem(raw=item, reason=str(error)))
        except PendingReceiptError:
            pending += 1
    return Page(tuple(parsed), tuple(rejected), pending)


def parse_send_statuses(response: Mapping[str, Any]) -> Page[SendStatus]:
    """Receipts of ``PullSmsSendStatus`` and ``PullSmsSendStatusByPhoneNumber``."""
    return _page(response, "PullSmsSendStatusSet", _send_status)


def parse_replies(response: Mapping[str, Any]) -> Page[ReplyStatus]:
    """Replies of ``PullSmsReplyStatus`` and ``PullSmsReplyStatusByPhoneNumber``."""
    return _page(response, "PullSmsReplyStatusSet", _reply)


def _object(response: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = response.get(key)
    if not isinstance(value, dict):
        raise MalformedResponseError("MalformedResponse", f"{key} is missing or not an object")
    return value


def parse_statistics(response: Mapping[str, Any]) -> CallbackStatistics:
    """The counters of ``CallbackStatusStatistics``: whole numbers, a null or missing one is 0
    (the SDK's models allow null)."""
    body = _object(response, "CallbackStatusStatistics")
    counters: dict[str, int] = {}
    for ours, theirs in STATISTICS_FIELDS:
        try:
            counters[ours] = 0 if body.get(theirs) is None else _int(body, theirs)
        except ItemError as error:
            raise MalformedResponseError("MalformedResponse", str(error)) from None
    return CallbackStatistics(counters)


def parse_conversion(response: Mapping[str, Any]) -> ConversionStatus:
    """The status of ``ReportConversion``."""
    body = _object(response, "ReportConversionStatus")
    try:
        return ConversionStatus(
            code=_text(body, "Code", required=True), message=_text(body, "Message")
        )
    except ItemError as error:
        raise MalformedResponseError("MalformedResponse", str(error)) from None
