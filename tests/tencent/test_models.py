"""Parsing API items: the one-step check of well-formed items agrees with the field-by-field one;
only final receipts are receipts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcsms_poller.tencent import models
from tcsms_poller.tencent.models import (
    _REPLY_KEYS,
    _SEND_STATUS_KEYS,
    ItemError,
    PendingReceiptError,
    _checked_reply,
    _checked_send_status,
    _reply,
    _send_status,
    parse_send_statuses,
)

# What Tencent could send in a field, well formed or not (and the values that decide a receipt's
# fate, which random text would hardly ever hit).
values = st.one_of(
    st.sampled_from(["SUCCESS", "FAIL", "success", "Fail", "", "+8613711112222"]),
    st.text(max_size=8),
    st.integers(min_value=-5, max_value=2**40),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.floats(allow_nan=False),
)


texts = st.text(max_size=4)
times = st.integers(min_value=0, max_value=2**40)
# Each key's well-formed values, so that many items are well formed or one field off it.
WELL_FORMED: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(_SEND_STATUS_KEYS + _REPLY_KEYS, texts),
    "ReportStatus": st.sampled_from(["SUCCESS", "FAIL"]),
    "UserReceiveTime": times,
    "ReplyTime": times,
    "SessionContext": st.none() | texts,
}


def items(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Items well formed, with some fields odd, or with any subset of ``keys`` holding any of
    ``values``."""
    return st.one_of(
        st.fixed_dictionaries({key: WELL_FORMED[key] for key in keys}),
        st.fixed_dictionaries({key: WELL_FORMED[key] | values for key in keys}),
        st.dictionaries(st.sampled_from(keys), values, max_size=len(keys)),
    )


def outcome(parse: Any, item: dict[str, Any]) -> object:
    try:
        return parse(item)
    except ItemError as error:
        return ("rejected", str(error))
    except PendingReceiptError:
        return "pending"


@given(items(_SEND_STATUS_KEYS))
def test_receipts_parse_the_same_either_way(item: dict[str, Any]) -> None:
    assert outcome(_send_status, item) == outcome(_checked_send_status, item)


@given(items(_REPLY_KEYS))
def test_replies_parse_the_same_either_way(item: dict[str, Any]) -> None:
    assert outcome(_reply, item) == outcome(_checked_reply, item)


def test_a_well_formed_item_takes_the_one_step_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both kinds of well-formed receipt (with and without a SessionContext) and a reply never
    reach the field-by-field check."""
    checked_receipt = models._checked_send_status

    def unexpected(item: dict[str, Any]) -> None:
        raise AssertionError(f"the field-by-field check ran for {item!r}")

    monkeypatch.setattr(models, "_checked_send_status", unexpected)
    monkeypatch.setattr(models, "_checked_reply", unexpected)
    receipt = dict.fromkeys(_SEND_STATUS_KEYS, "x") | {
        "ReportStatus": "SUCCESS",
        "UserReceiveTime": 1764000000,
    }
    for context in ("order-1", None):
        parsed = _send_status(receipt | {"SessionContext": context})
        assert parsed == checked_receipt(receipt | {"SessionContext": context})
        assert parsed.session_context == context
    reply = dict.fromkeys(_REPLY_KEYS, "y") | {"ReplyTime": 1764000001}
    assert _reply(reply).reply_time == 1764000001


RECEIPT = {
    "SerialNo": "5000:1045710669157053657849499619",
    "PhoneNumber": "+8613711112222",
    "CountryCode": "86",
    "SubscriberNumber": "13711112222",
    "ReportStatus": "SUCCESS",
    "Description": "DELIVRD",
    "UserReceiveTime": 1764000000,
    "SessionContext": "",
}


def test_an_empty_session_context_is_none() -> None:
    """Tencent's "" for no SessionContext is null, as a push without one is."""
    [status] = parse_send_statuses({"PullSmsSendStatusSet": [RECEIPT]}).items
    assert status.session_context is None


def test_report_status_is_taken_in_any_case() -> None:
    """success / fail are SUCCESS / FAIL."""
    page = parse_send_statuses(
        {
            "PullSmsSendStatusSet": [
                RECEIPT | {"ReportStatus": "success"},
                RECEIPT | {"ReportStatus": "fail"},
            ]
        }
    )
    assert [status.report_status for status in page.items] == ["SUCCESS", "FAIL"]


def test_a_receipt_without_a_final_status_is_only_counted() -> None:
    """No ReportStatus yet (empty, null or absent, with UserReceiveTime 0): not a receipt, not
    rejected, only counted as pending; the final receipts beside it parse."""
    placeholder = RECEIPT | {"Description": "", "UserReceiveTime": 0}
    absent = {key: value for key, value in placeholder.items() if key != "ReportStatus"}
    page = parse_send_statuses(
        {
            "PullSmsSendStatusSet": [
                placeholder | {"ReportStatus": ""},
                placeholder | {"ReportStatus": None},
                absent,
                RECEIPT | {"SerialNo": "final"},
            ]
        }
    )
    assert [status.serial_no for status in page.items] == ["final"]
    assert (page.rejected, page.pending, page.size) == ((), 3, 4)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ReportStatus": "DELIVRD"}, "ReportStatus 'DELIVRD' is neither SUCCESS nor FAIL"),
        ({"ReportStatus": 0}, "ReportStatus 0 is neither SUCCESS nor FAIL"),
        (
            {"ReportStatus": "\u017fuccess"},  # upper-cases to SUCCESS
            "ReportStatus '\u017fuccess' is neither SUCCESS nor FAIL",
        ),
        ({"SerialNo": ""}, "SerialNo is empty"),
        ({"PhoneNumber": ""}, "PhoneNumber is empty"),
    ],
)
def test_an_unknown_status_or_an_empty_id_is_rejected(change: dict[str, Any], reason: str) -> None:
    """An unknown ReportStatus is not a receipt we understand: rejected (to be kept), as is a
    receipt without SerialNo or number."""
    page = parse_send_statuses({"PullSmsSendStatusSet": [RECEIPT | change]})
    assert (page.items, page.pending) == ((), 0)
    assert [item.reason for item in page.rejected] == [reason]
