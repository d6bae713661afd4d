"""The SMS actions: their parameters, checks, error codes and answers.

Error codes come from the seeds (Tencent's API pages). Where a page is silent the choice is ours,
documented here and in the report of the emulator's issue:

- ``Limit`` outside 1..100 and ``Offset`` other than 0 answer ``InvalidParameterValue.
  LimitVerifyFail`` / ``OffsetVerifyFail`` for every action (only the statistics page lists them);
- an ``SmsSdkAppId`` that is not all digits does not exist (``InvalidParameterValue.
  SdkAppIdNotExist``); a well-formed one of another account fails
  ``UnauthorizedOperation.SmsSdkAppIdVerifyFail``;
- ``ReportConversion`` of a SerialNo the app never sent answers ``InvalidParameterValue`` (the
  page documents no code for it);
- ``CallbackStatusStatistics`` plays either reading of its hours (``statistics_end``): by default
  the newest SDK models' ("EndTime >= BeginTime", the range includes the end hour), so one hour
  is ``[h, h]``; or the older English page's ("EndTime must be after BeginTime"), which refuses
  equal hours with ``InvalidParameterValue.EndTimeVerifyFail`` and counts ``[h, h+1)``;
- an empty result set is ``null``, as Tencent answers when there is nothing new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tcsms_poller.emulator.answers import ApiError
from tcsms_poller.emulator.options import StatisticsEnd
from tcsms_poller.emulator.params import Params
from tcsms_poller.emulator.sending import MAX_NUMBERS
from tcsms_poller.emulator.store import ConversionRecord, Store
from tcsms_poller.settings_types import is_e164
from tcsms_poller.tencent.api import (
    BEIJING,
    BY_NUMBER_LOOKBACK,
    PAGE_LIMIT,
    STATISTICS_RANGE,
    Action,
)

if TYPE_CHECKING:
    from tcsms_poller.emulator.sending import Outbound

__all__ = ["ACTION_HANDLERS", "Call", "Handler", "run_action"]

HOUR = 3600


@dataclass(frozen=True, slots=True)
class Call:
    """What an answer depends on besides its parameters: the wall time and the readings played."""

    now: float
    statistics_end: StatisticsEnd = StatisticsEnd.INCLUSIVE
    outbound: Outbound | None = None  # where SendSms sends


@dataclass(frozen=True, slots=True)
class Handler:
    """An action's accepted parameters and the function answering it."""

    params: frozenset[str]
    answer: Callable[[Params, Store, Call], dict[str, Any]]


def _app(params: Params, store: Store) -> str:
    app_id = params.string("SmsSdkAppId")
    if not app_id.isdigit():
        raise ApiError("InvalidParameterValue.SdkAppIdNotExist", "The SdkAppId does not exist.")
    if not store.has_app(app_id):
        raise ApiError(
            "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
            f"SmsSdkAppId {app_id} is not under the account of this SecretId.",
        )
    return app_id


def _limit(params: Params) -> int:
    limit = params.integer("Limit")
    if not 1 <= limit <= PAGE_LIMIT:
        raise ApiError(
            "InvalidParameterValue.LimitVerifyFail",
            f"Limit must be 1 to {PAGE_LIMIT}, not {limit}.",
        )
    return limit


def _fixed(params: Params, name: str, code: str) -> None:
    if params.integer(name) != 0:
        raise ApiError(code, f"{name} is currently fixed at 0.")


def _set(items: Sequence[Any]) -> list[dict[str, Any]] | None:
    return [item.to_api() for item in items] or None


def _pull_replies(params: Params, store: Store, call: Call) -> dict[str, Any]:
    app_id, limit = _app(params, store), _limit(params)
    return {"PullSmsReplyStatusSet": _set(store.take_replies(app_id, limit, call.now))}


def _pull_send_statuses(params: Params, store: Store, call: Call) -> dict[str, Any]:
    app_id, limit = _app(params, store), _limit(params)
    return {"PullSmsSendStatusSet": _set(store.take_send_statuses(app_id, limit, call.now))}


@dataclass(frozen=True, slots=True)
class _Window:
    app_id: str
    number: str
    begin: int
    end: int
    limit: int


def _window(params: Params, store: Store, now: float) -> _Window:
    app_id = _app(params, store)
    number = params.string("PhoneNumber")
    if not is_e164(number):
        raise ApiError(
            "InvalidParameterValue.IncorrectPhoneNumber",
            f"PhoneNumber {number!r} is not in E.164 format, like +8613711112222.",
        )
    begin = params.integer("BeginTime")
    _fixed(params, "Offset", "InvalidParameterValue.OffsetVerifyFail")
    limit = _limit(params)
    end = params.optional_integer("EndTime")
    if begin < int(now) - BY_NUMBER_LOOKBACK:
        raise ApiError(
            "InvalidParameterValue.BeginTimeVerifyFail",
            "BeginTime is more than 7 days ago; at most the last 7 days can be pulled.",
        )
    if end is None:
        end = int(now)
    elif end < begin:
        raise ApiError("InvalidParameterValue.InvalidStartTime", "BeginTime is later than EndTime.")
    return _Window(app_id, number, begin, end, limit)


def _send_statuses_by_number(params: Params, store: Store, call: Call) -> dict[str, Any]:
    w = _window(params, store, call.now)
    found = store.send_statuses_of(w.app_id, w.number, w.begin, w.end, w.limit)
    return {"PullSmsSendStatusSet": _set(found)}


def _replies_by_number(params: Params, store: Store, call: Call) -> dict[str, Any]:
    w = _window(params, store, call.now)
    found = store.replies_of(w.app_id, w.number, w.begin, w.end, w.limit)
    return {"PullSmsReplyStatusSet": _set(found)}


def _hour(params: Params, name: str, code: str) -> int:
    text = params.string(name)
    try:
        if len(text) != 10 or not text.isdigit():
            raise ValueError(text)
        moment = datetime.strptime(text, "%Y%m%d%H").replace(tzinfo=BEIJING)
    except ValueError:
        raise ApiError(code, f"{name} {text!r} is not yyyymmddhh, like 2021050113.") from None
    return int(moment.timestamp())


def _statistics(params: Params, store: Store, call: Call) -> dict[str, Any]:
    app_id = _app(params, store)
    begin = _hour(params, "BeginTime", "InvalidParameterValue.BeginTimeVerifyFail")
    end = _hour(params, "EndTime", "InvalidParameterValue.EndTimeVerifyFail")
    _fixed(params, "Limit", "InvalidParameterValue.LimitVerifyFail")
    _fixed(params, "Offset", "InvalidParameterValue.OffsetVerifyFail")
    inclusive = call.statistics_end is StatisticsEnd.INCLUSIVE
    if end < begin or (end == begin and not inclusive):
        rule = "at or after" if inclusive else "after"
        raise ApiError(
            "InvalidParameterValue.EndTimeVerifyFail", f"EndTime must be {rule} BeginTime."
        )
    if end - begin > STATISTICS_RANGE:
        raise ApiError(
            "InvalidParameterValue.EndTimeVerifyFail",
            "EndTime must be at most 32 days after BeginTime.",
        )
    last = end if inclusive else end - HOUR
    return {"CallbackStatusStatistics": store.statistics(app_id, begin, last)}


def _report_conversion(params: Params, store: Store, call: Call) -> dict[str, Any]:
    app_id = _app(params, store)
    serial_no = params.string("SerialNo")
    conversion_time = params.optional_integer("ConversionTime")
    if not store.is_sent(app_id, serial_no):
        raise ApiError(
            "InvalidParameterValue", f"SerialNo {serial_no} is not a message of SdkAppId {app_id}."
        )
    store.add_conversion(ConversionRecord(app_id, serial_no, conversion_time, call.now))
    return {"ReportConversionStatus": {"Code": "ok", "Message": "report success"}}


def _strings(params: Params, name: str, *, required: bool) -> list[str]:
    value = params.optional(name, required=required)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError("InvalidParameter", f"The parameter `{name}` must be an Array of String.")
    return value


def _send_sms(params: Params, store: Store, call: Call) -> dict[str, Any]:
    app_id = _app(params, store)
    numbers = _strings(params, "PhoneNumberSet", required=True)
    if not 1 <= len(numbers) <= MAX_NUMBERS:
        raise ApiError(
            "LimitExceeded.PhoneNumberCountLimit",
            f"PhoneNumberSet holds 1 to {MAX_NUMBERS} numbers, not {len(numbers)}.",
        )
    params.string("TemplateId")
    _strings(params, "TemplateParamSet", required=False)
    for name in ("SignName", "ExtendCode", "SenderId"):
        params.optional_string(name)
    context = params.optional_string("SessionContext") or ""
    assert call.outbound is not None  # every running emulator has one
    return {"SendStatusSet": call.outbound.send(app_id, numbers, context)}


_QUEUE = frozenset({"SmsSdkAppId", "Limit"})
_BY_NUMBER = frozenset({"SmsSdkAppId", "PhoneNumber", "BeginTime", "EndTime", "Offset", "Limit"})

ACTION_HANDLERS: dict[str, Handler] = {
    Action.PULL_SMS_REPLY_STATUS: Handler(_QUEUE, _pull_replies),
    Action.PULL_SMS_SEND_STATUS: Handler(_QUEUE, _pull_send_statuses),
    Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER: Handler(_BY_NUMBER, _send_statuses_by_number),
    Action.PULL_SMS_REPLY_STATUS_BY_PHONE_NUMBER: Handler(_BY_NUMBER, _replies_by_number),
    Action.CALLBACK_STATUS_STATISTICS: Handler(
        frozenset({"SmsSdkAppId", "BeginTime", "EndTime", "Limit", "Offset"}), _statistics
    ),
    Action.SEND_SMS: Handler(
        frozenset(
            {
                "PhoneNumberSet",
                "SmsSdkAppId",
                "TemplateId",
                "SignName",
                "TemplateParamSet",
                "ExtendCode",
                "SessionContext",
                "SenderId",
            }
        ),
        _send_sms,
    ),
    Action.REPORT_CONVERSION: Handler(
        frozenset({"SmsSdkAppId", "SerialNo", "ConversionTime"}), _report_conversion
    ),
}


def run_action(
    name: str,
    values: dict[str, Any],
    store: Store,
    now: float,
    *,
    statistics_end: StatisticsEnd = StatisticsEnd.INCLUSIVE,
    outbound: Outbound | None = None,
) -> dict[str, Any]:
    """Answer one request of action ``name`` (one of ``ACTION_HANDLERS``) at wall time ``now``.

    Raises:
        ApiError: the request is invalid; nothing was changed.
    """
    handler = ACTION_HANDLERS[name]
    return handler.answer(
        Params(values, handler.params), store, Call(now, statistics_end, outbound)
    )
