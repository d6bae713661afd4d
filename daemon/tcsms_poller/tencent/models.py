"""Typed results of the six actions, parsed from Tencent's JSON without trusting it.

Queue-mode answers exist once only, so one bad item must not cost the whole page: items that
cannot be parsed come back in ``Page.rejected`` with the reason (the caller quarantines them
durably), while an answer whose overall shape is wrong raises ``MalformedResponseError``.
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
    "Page",
    "RejectedItem",
    "ReplyStatus",
    "SendStatus",
    "parse_conversion",
    "parse_replies",
    "parse_send_statuses",
    "parse_statistics",
]

T = TypeVar("T")


class ItemError(ValueError):
    """One item of a page is unusable."""


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
    """The parsed items of one answer, and those that could not be parsed."""

    items: tuple[T, ...]
    rejected: tuple[RejectedItem, ...] = ()


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


def _int(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    if type(value) is int:  # exactly int: a bool is not a time
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ItemError(f"{key} is {value!r}, not a UNIX time")


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
# field by field, which is left for the rest (to convert, or reject, one field at a time). A
# well-formed item's values become the named tuple in C, without the Python-level ``_make``.
_new_send_status = partial(tuple.__new__, SendStatus)
_new_reply = partial(tuple.__new__, ReplyStatus)


def _send_status(item: Mapping[str, Any]) -> SendStatus:
    values = tuple(map(item.get, _SEND_STATUS_KEYS))
    if tuple(map(type, values)) in _SEND_STATUS_TYPES:
        return _new_send_status(values)
    return _checked_send_status(item)


def _checked_send_status(item: Mapping[str, Any]) -> SendStatus:
    context = item.get("SessionContext")
    return SendStatus(
        serial_no=_text(item, "SerialNo", required=True),
        phone_number=_text(item, "PhoneNumber", required=True),
        country_code=_text(item, "CountryCode"),
        subscriber_number=_text(item, "SubscriberNumber"),
        report_status=_text(item, "ReportStatus", required=True),
        description=_text(item, "Description"),
        user_receive_time=_int(item, "UserReceiveTime"),
        session_context=None if context is None else _text(item, "SessionContext"),
    )


def _reply(item: Mapping[str, Any]) -> ReplyStatus:
    values = tuple(map(item.get, _REPLY_KEYS))
    if tuple(map(type, values)) in _REPLY_TYPES:
        return _new_reply(values)
    return _checked_reply(item)


def _checked_reply(item: Mapping[str, Any]) -> ReplyStatus:
    return ReplyStatus(
        phone_number=_text(item, "PhoneNumber", required=True),
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
    parsed: list[T] = []
    rejected: list[RejectedItem] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise ItemError(f"item is {type(item).__name__}, not an object")
            parsed.append(parse(item))
        except ItemError as error:
            rejected.append(RejectedItem(raw=item, reason=str(error)))
    return Page(tuple(parsed), tuple(rejected))


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
