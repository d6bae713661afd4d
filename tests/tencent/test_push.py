"""Push bodies: what Tencent sends parses; anything else is a PushError naming the field."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcsms_poller.tencent.push import (
    MAX_STATUS_BATCH,
    PushError,
    parse_reply_push,
    parse_status_push,
)

RECEIPT = {
    "user_receive_time": "2015-10-17 08:03:04",
    "nationcode": "86",
    "mobile": "13711112222",
    "report_status": "SUCCESS",
    "errmsg": "DELIVRD",
    "description": "The SMS message is successfully delivered",
    "sid": "xxxxxxx",
}
REPLY = {
    "extend": "",
    "mobile": "13711112222",
    "nationcode": "86",
    "sign": "S",
    "text": "hi",
    "time": 1544166000,
}


def test_documented_status_push_parses() -> None:
    """The sample from Tencent's documentation parses; its time is Beijing time; the carrier
    code and the text stay in separate fields."""
    [(status, text)] = parse_status_push([RECEIPT]).items
    assert status.serial_no == "xxxxxxx"
    assert status.phone_number == "+8613711112222"
    assert status.user_receive_time == 1445040184  # 2015-10-17 00:03:04 UTC
    assert status.description == "DELIVRD"
    assert text == "The SMS message is successfully delivered"


def test_ext_becomes_the_session_context() -> None:
    """The optional ext field (not documented by Tencent) is the SessionContext of the pulled
    copy; an empty or non-string one is none, like a receipt without ext."""
    for ext, context in (("order-42", "order-42"), ("", None), (42, None), ({"a": 1}, None)):
        [(status, _)] = parse_status_push([{**RECEIPT, "ext": ext}]).items
        assert status.session_context == context
    [(status, _)] = parse_status_push([RECEIPT]).items
    assert status.session_context is None


def test_an_empty_errmsg_leaves_the_carrier_code_empty() -> None:
    """Without errmsg the code is empty: the text never stands in for it."""
    for errmsg in ("", None):
        [(status, text)] = parse_status_push([{**RECEIPT, "errmsg": errmsg}]).items
        assert (status.description, text) == ("", RECEIPT["description"])
    [(status, text)] = parse_status_push([{**RECEIPT, "description": ""}]).items
    assert (status.description, text) == ("DELIVRD", None)


def test_report_status_is_taken_in_any_case() -> None:
    """success / Fail are SUCCESS / FAIL."""
    page = parse_status_push(
        [{**RECEIPT, "report_status": "success"}, {**RECEIPT, "report_status": "Fail"}]
    )
    assert [status.report_status for status, _ in page.items] == ["SUCCESS", "FAIL"]


def test_documented_reply_push_parses() -> None:
    """A reply push maps onto the pulled reply's fields."""
    [reply] = parse_reply_push(REPLY).items
    assert (reply.phone_number, reply.reply_content, reply.reply_time) == (
        "+8613711112222",
        "hi",
        1544166000,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "expected a non-empty JSON array"),
        ([], "expected a non-empty JSON array"),
        ("x", "expected a non-empty JSON array"),
        ([RECEIPT] * 101, "at most 100"),
    ],
)
def test_a_body_that_is_no_status_push_is_refused(body: Any, message: str) -> None:
    """Only the body's own shape refuses the whole push."""
    with pytest.raises(PushError, match=message):
        parse_status_push(body)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("x", "item is str, not an object"),
        ({**RECEIPT, "sid": ""}, "sid: expected a non-empty string"),
        ({**RECEIPT, "report_status": "OK"}, "report_status 'OK' is neither SUCCESS nor FAIL"),
        ({**RECEIPT, "report_status": 1}, "report_status 1 is neither SUCCESS nor FAIL"),
        ({**RECEIPT, "mobile": "abc"}, "nationcode and mobile do not form an E.164 number"),
        ({**RECEIPT, "user_receive_time": ""}, "user_receive_time: expected a non-empty string"),
        ({**RECEIPT, "user_receive_time": "yesterday"}, "user_receive_time: expected 'YYYY"),
        ({**RECEIPT, "user_receive_time": "1970-01-01 07:59:59"}, "user_receive_time: expected"),
        ({**RECEIPT, "nationcode": None}, "nationcode: expected a non-empty string"),
        ({k: v for k, v in RECEIPT.items() if k != "nationcode"}, "nationcode: expected"),
        ({**RECEIPT, "description": ["x"]}, "description: expected a non-empty string"),
    ],
)
def test_an_odd_receipt_is_rejected_alone(item: Any, reason: str) -> None:
    """One odd item is rejected with its reason and kept verbatim; the good ones around it
    parse."""
    good = [{**RECEIPT, "sid": "a"}, {**RECEIPT, "sid": "b"}]
    page = parse_status_push([good[0], item, good[1]])
    assert [status.serial_no for status, _ in page.items] == ["a", "b"]
    [rejected] = page.rejected
    assert rejected.raw == item
    assert rejected.reason.startswith(reason)
    assert page.pending == 0


@pytest.mark.parametrize("report_status", ["", None, "absent"])
def test_a_receipt_without_a_final_status_is_pending(report_status: str | None) -> None:
    """No report_status yet (empty, null or absent; the time may be empty too): neither a
    receipt nor rejected, only counted."""
    item = {**RECEIPT, "report_status": report_status, "errmsg": "", "user_receive_time": ""}
    if report_status == "absent":
        del item["report_status"]
    page = parse_status_push([item, {**RECEIPT, "sid": "final"}])
    assert [status.serial_no for status, _ in page.items] == ["final"]
    assert (page.rejected, page.pending) == ((), 1)


@pytest.mark.parametrize("body", [[REPLY], "hi", None])
def test_a_body_that_is_no_reply_push_is_refused(body: Any) -> None:
    """A reply push is one object; anything else refuses the push."""
    with pytest.raises(PushError, match="expected a JSON object"):
        parse_reply_push(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**REPLY, "time": "soon"}, "time: expected a UNIX time"),
        ({**REPLY, "time": -5}, "time: expected a UNIX time"),
        ({**REPLY, "text": None}, "text: expected a string"),
        ({**REPLY, "mobile": ""}, "mobile: expected a non-empty string"),
    ],
)
def test_an_odd_reply_is_rejected_not_refused(body: Any, reason: str) -> None:
    """A reply object with an odd field is rejected (to be kept), not refused: a retry by
    Tencent would bring the same object again."""
    page = parse_reply_push(body)
    assert page.items == ()
    [rejected] = page.rejected
    assert rejected.raw == body
    assert rejected.reason.startswith(reason)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)


@given(json_values)
def test_arbitrary_json_never_crashes_the_parsers(body: Any) -> None:
    """Whatever JSON arrives, the parsers answer a result or a PushError, nothing else; every
    item of a push they take is accounted for: parsed, rejected or pending."""
    for parse, items in ((parse_status_push, body), (parse_reply_push, [body])):
        with contextlib.suppress(PushError):
            assert parse(body).size == len(items)


receipt_items = st.fixed_dictionaries(
    {key: st.sampled_from([value, "", None]) for key, value in RECEIPT.items()},
    optional={"ext": json_values},
)


@given(st.lists(receipt_items, min_size=1, max_size=MAX_STATUS_BATCH))
def test_every_receipt_of_a_push_is_accounted_for(body: list[dict[str, Any]]) -> None:
    """Receipts with fields well formed, empty or null: each one is parsed, rejected or
    pending, never refused with the push nor lost; a parsed one is final and complete."""
    page = parse_status_push(body)
    assert page.size == len(body)
    for status, _ in page.items:
        assert status.report_status in ("SUCCESS", "FAIL")
        assert status.serial_no
        assert status.phone_number == "+8613711112222"
