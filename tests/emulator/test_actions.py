"""The six actions: documented checks with their codes, windows, statistics and conversions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tcsms_poller.emulator.actions import run_action
from tcsms_poller.emulator.answers import ApiError
from tcsms_poller.emulator.options import StatisticsEnd, WindowOrder, WindowTime
from tcsms_poller.emulator.store import SEND_LEAD, Store
from tcsms_poller.tencent.api import BEIJING
from tests.support.emulator_api import APP, NUMBER, receipt, reply

NOW = 1_700_000_000
DAY = 86_400
OTHER = "+8613900001111"


def hour(moment: int) -> str:
    """``yyyymmddhh`` in Beijing time."""
    return datetime.fromtimestamp(moment, BEIJING).strftime("%Y%m%d%H")


@pytest.fixture
def store() -> Store:
    """An account with one app and nothing in it."""
    return Store((APP,))


def code_of(store: Store, action: str, params: dict[str, Any]) -> str:
    """The error code ``action`` answers ``params`` with."""
    with pytest.raises(ApiError) as raised:
        run_action(action, params, store, NOW)
    return raised.value.code


WINDOW: dict[str, Any] = {"SmsSdkAppId": APP, "PhoneNumber": NUMBER, "BeginTime": NOW - 60}
WINDOW |= {"Offset": 0, "Limit": 100}
HOURS: dict[str, Any] = {"SmsSdkAppId": APP, "BeginTime": hour(NOW - 3600), "EndTime": hour(NOW)}
HOURS |= {"Limit": 0, "Offset": 0}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("PullSmsSendStatus", {"SmsSdkAppId": APP}, "MissingParameter"),
    ("PullSmsSendStatus", {"Limit": 10}, "MissingParameter"),
    ("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 0},
     "InvalidParameterValue.LimitVerifyFail"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": 101},
     "InvalidParameterValue.LimitVerifyFail"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": "10"}, "InvalidParameter"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": True}, "InvalidParameter"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": 1400006666, "Limit": 1}, "InvalidParameter"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": 1, "Offset": 0}, "UnknownParameter"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": "1400000000", "Limit": 1},
     "UnauthorizedOperation.SmsSdkAppIdVerifyFail"),
    ("PullSmsReplyStatus", {"SmsSdkAppId": "app", "Limit": 1},
     "InvalidParameterValue.SdkAppIdNotExist"),
    ("PullSmsSendStatusByPhoneNumber", {**WINDOW, "PhoneNumber": "13711112222"},
     "InvalidParameterValue.IncorrectPhoneNumber"),
    ("PullSmsSendStatusByPhoneNumber", {**WINDOW, "PhoneNumber": "+86-137"},
     "InvalidParameterValue.IncorrectPhoneNumber"),
    ("PullSmsSendStatusByPhoneNumber", {**WINDOW, "Offset": 100},
     "InvalidParameterValue.OffsetVerifyFail"),
    ("PullSmsSendStatusByPhoneNumber", {**WINDOW, "Limit": 500},
     "InvalidParameterValue.LimitVerifyFail"),
    ("PullSmsSendStatusByPhoneNumber", {**WINDOW, "BeginTime": NOW - 7 * DAY - 1},
     "InvalidParameterValue.BeginTimeVerifyFail"),
    ("PullSmsReplyStatusByPhoneNumber", {**WINDOW, "EndTime": NOW - 61},
     "InvalidParameterValue.InvalidStartTime"),
    ("PullSmsReplyStatusByPhoneNumber", {k: v for k, v in WINDOW.items() if k != "BeginTime"},
     "MissingParameter"),
    ("PullSmsReplyStatusByPhoneNumber", {k: v for k, v in WINDOW.items() if k != "Offset"},
     "MissingParameter"),
    ("CallbackStatusStatistics", {**HOURS, "BeginTime": "2021-05-01"},
     "InvalidParameterValue.BeginTimeVerifyFail"),
    ("CallbackStatusStatistics", {**HOURS, "EndTime": "2021053125"},
     "InvalidParameterValue.EndTimeVerifyFail"),
    ("CallbackStatusStatistics", {**HOURS, "EndTime": hour(NOW - 7200)},
     "InvalidParameterValue.EndTimeVerifyFail"),
    ("CallbackStatusStatistics", {**HOURS, "BeginTime": hour(NOW - 33 * DAY)},
     "InvalidParameterValue.EndTimeVerifyFail"),
    ("CallbackStatusStatistics", {**HOURS, "Limit": 10}, "InvalidParameterValue.LimitVerifyFail"),
    ("CallbackStatusStatistics", {**HOURS, "Offset": 1}, "InvalidParameterValue.OffsetVerifyFail"),
    ("CallbackStatusStatistics", {**HOURS, "BeginTime": 2021050113}, "InvalidParameter"),
    ("ReportConversion", {"SmsSdkAppId": APP, "SerialNo": "5000:unknown"}, "InvalidParameterValue"),
    ("ReportConversion", {"SmsSdkAppId": APP}, "MissingParameter"),
    ("ReportConversion", {"SmsSdkAppId": APP, "SerialNo": "s", "ConversionTime": "now"},
     "InvalidParameter"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "params", "code"), INVALID, ids=[f"{a}-{c}" for a, _, c in INVALID]
)
def test_invalid_requests_get_the_documented_code(
    store: Store, action: str, params: dict[str, Any], code: str
) -> None:
    """Each invalid parameter is refused with its code, and nothing changes."""
    store.add_send_status(receipt(NOW - 10, "s"))
    assert code_of(store, action, params) == code
    assert store.truth()["send_statuses"][0]["handed_out_at"] is None


def test_seven_days_back_exactly_is_allowed(store: Store) -> None:
    """BeginTime exactly 7 days ago is the oldest accepted."""
    params = {**WINDOW, "BeginTime": NOW - 7 * DAY}
    assert run_action("PullSmsSendStatusByPhoneNumber", params, store, NOW) == {
        "PullSmsSendStatusSet": None
    }


def test_the_window_is_inclusive_ascending_and_limited(store: Store) -> None:
    """Records with BeginTime <= t <= EndTime, oldest first, at most Limit, only that number."""
    for at, serial in [(105, "e"), (100, "a"), (110, "f"), (101, "b"), (101, "c"), (99, "x")]:
        store.add_send_status(receipt(NOW - 1000 + at, serial))
    store.add_send_status(receipt(NOW - 1000 + 101, "other", number=OTHER))
    params = {**WINDOW, "BeginTime": NOW - 900, "EndTime": NOW - 890, "Limit": 4}
    answer = run_action("PullSmsSendStatusByPhoneNumber", params, store, NOW)
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == ["a", "b", "c", "e"]
    params["Limit"] = 100
    answer = run_action("PullSmsSendStatusByPhoneNumber", params, store, NOW)
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == [
        "a",
        "b",
        "c",
        "e",
        "f",
    ]


def serials(store: Store, begin: int, end: int, limit: int = 100) -> list[str]:
    """The SerialNos a per-number window answers, in the order answered."""
    params = {**WINDOW, "BeginTime": NOW - 1000 + begin, "EndTime": NOW - 1000 + end}
    answer = run_action("PullSmsSendStatusByPhoneNumber", {**params, "Limit": limit}, store, NOW)
    return [item["SerialNo"] for item in answer["PullSmsSendStatusSet"] or []]


def test_the_send_time_reading_filters_on_when_the_message_was_sent() -> None:
    """Read as send time, a receipt that came late sits at its send; one given without a send
    time was sent SEND_LEAD seconds before it was received."""
    store = Store((APP,), window_time=WindowTime.SEND)
    store.add_send_status(receipt(NOW - 1000 + 500, "late", sent=NOW - 1000 + 100))
    store.add_send_status(receipt(NOW - 1000 + 300, "prompt"))
    assert serials(store, 100, 100) == ["late"]
    assert serials(store, 300 - SEND_LEAD, 300 - SEND_LEAD) == ["prompt"]
    assert serials(store, 300, 500) == []


def test_the_descending_reading_answers_the_newest_first_and_limits_from_there() -> None:
    """Read as descending, a full page is the newest records of the window."""
    store = Store((APP,), order=WindowOrder.DESC)
    for at, serial in [(100, "a"), (101, "b"), (101, "c"), (105, "e")]:
        store.add_send_status(receipt(NOW - 1000 + at, serial))
    assert serials(store, 100, 110) == ["e", "c", "b", "a"]
    assert serials(store, 100, 110, limit=2) == ["e", "c"]
    store.add_reply(reply(NOW - 10, "older"))
    store.add_reply(reply(NOW - 5, "newer"))
    answer = run_action("PullSmsReplyStatusByPhoneNumber", WINDOW, store, NOW)
    assert [item["ReplyContent"] for item in answer["PullSmsReplyStatusSet"]] == ["newer", "older"]


def test_a_reply_is_found_at_its_reply_time_under_the_send_time_reading() -> None:
    """A reply is sent when it is made: both readings put it at its reply time."""
    store = Store((APP,), window_time=WindowTime.SEND)
    store.add_reply(reply(NOW - 30, "hi"))
    params = {**WINDOW, "BeginTime": NOW - 30, "EndTime": NOW - 30}
    answer = run_action("PullSmsReplyStatusByPhoneNumber", params, store, NOW)
    assert [item["ReplyContent"] for item in answer["PullSmsReplyStatusSet"]] == ["hi"]


def test_end_time_defaults_to_now(store: Store) -> None:
    """Without EndTime everything up to now is in the window (but nothing from the future)."""
    store.add_reply(reply(NOW - 5, "past"))
    store.add_reply(reply(NOW + 5, "future"))
    answer = run_action("PullSmsReplyStatusByPhoneNumber", WINDOW, store, NOW)
    assert [item["ReplyContent"] for item in answer["PullSmsReplyStatusSet"]] == ["past"]


def test_by_number_queries_do_not_touch_the_queue(store: Store) -> None:
    """Reading a number's receipts leaves them in the queue for PullSmsSendStatus."""
    store.add_send_status(receipt(NOW - 5, "a"))
    run_action("PullSmsSendStatusByPhoneNumber", WINDOW, store, NOW)
    answer = run_action("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 10}, store, NOW)
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == ["a"]


def statistics(store: Store, begin: int, end: int, reading: StatisticsEnd) -> dict[str, int]:
    """The counters ``CallbackStatusStatistics`` answers for the hours of ``begin``..``end``."""
    params = {**HOURS, "BeginTime": hour(begin), "EndTime": hour(end)}
    answer = run_action("CallbackStatusStatistics", params, store, NOW, statistics_end=reading)
    counters: dict[str, int] = answer["CallbackStatusStatistics"]
    return counters


@pytest.fixture
def two_hours(store: Store) -> int:
    """Receipts in two whole hours before now; returns the first hour's start."""
    start = NOW - NOW % 3600 - 2 * 3600
    store.add_send_status(receipt(start + 10, "a"))
    store.add_send_status(receipt(start + 20, "b", status="FAIL"))  # EXPIRED: phone off
    store.add_send_status(receipt(start + 3600, "c"))
    store.record_send(APP, "d", start + 30)  # sent, receipt still to come
    return start


FIRST_HOUR = {
    "CallbackCount": 2,
    "RequestSuccessCount": 3,
    "CallbackFailCount": 1,
    "CallbackSuccessCount": 1,
    "InternalErrorCount": 0,
    "InvalidNumberCount": 0,
    "ShutdownErrorCount": 1,
    "BlackListCount": 0,
    "FrequencyLimitCount": 0,
}


def test_statistics_count_both_end_hours_by_default(store: Store, two_hours: int) -> None:
    """Inclusive (the SDK models): one hour is [h, h]; [h, h+1] counts two hours."""
    inclusive = StatisticsEnd.INCLUSIVE
    assert statistics(store, two_hours, two_hours, inclusive) == FIRST_HOUR
    assert statistics(store, two_hours, two_hours + 3600, inclusive)["CallbackCount"] == 3
    assert statistics(store, two_hours + 3600, two_hours + 3600, inclusive)["CallbackCount"] == 1


def test_statistics_exclusive_reading_refuses_equal_hours(store: Store, two_hours: int) -> None:
    """Exclusive (the older page): [h, h] is refused; [h, h+1] counts hour h alone."""
    exclusive = StatisticsEnd.EXCLUSIVE
    assert statistics(store, two_hours, two_hours + 3600, exclusive) == FIRST_HOUR
    assert statistics(store, two_hours, two_hours + 7200, exclusive)["CallbackCount"] == 3
    with pytest.raises(ApiError) as refused:
        statistics(store, two_hours, two_hours, exclusive)
    assert refused.value.code == "InvalidParameterValue.EndTimeVerifyFail"


def test_statistics_accept_exactly_32_days(store: Store) -> None:
    """A range of exactly 32 days is the widest accepted."""
    params = {**HOURS, "BeginTime": hour(NOW - 32 * DAY), "EndTime": hour(NOW)}
    counters = run_action("CallbackStatusStatistics", params, store, NOW)
    assert counters["CallbackStatusStatistics"]["CallbackCount"] == 0


def test_a_conversion_of_a_sent_message_is_ok_and_recorded(store: Store) -> None:
    """ReportConversion of a known SerialNo answers ok and is kept in the truth."""
    store.record_send(APP, "5000:1", NOW - 100)
    params = {"SmsSdkAppId": APP, "SerialNo": "5000:1", "ConversionTime": NOW - 50}
    answer = run_action("ReportConversion", params, store, NOW)
    assert answer == {"ReportConversionStatus": {"Code": "ok", "Message": "report success"}}
    assert store.truth()["conversions"] == [
        {"app_id": APP, "serial_no": "5000:1", "conversion_time": NOW - 50, "reported_at": NOW}
    ]
