"""Push bodies: what Tencent sends parses; anything else is a PushError naming the field."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcsms_poller.tencent.push import PushError, parse_reply_push, parse_status_push

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
    """The sample from Tencent's documentation parses; its time is Beijing time."""
    [status] = parse_status_push([RECEIPT])
    assert status.serial_no == "xxxxxxx"
    assert status.phone_number == "+8613711112222"
    assert status.user_receive_time == 1445040184  # 2015-10-17 00:03:04 UTC
    assert status.description == "DELIVRD"


def test_ext_becomes_the_session_context() -> None:
    """The optional ext field is the SessionContext of the pulled copy."""
    [status] = parse_status_push([{**RECEIPT, "ext": "order-42"}])
    assert status.session_context == "order-42"


def test_documented_reply_push_parses() -> None:
    """A reply push maps onto the pulled reply's fields."""
    reply = parse_reply_push(REPLY)
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
        ([RECEIPT] * 101, "at most 100"),
        (["x"], r"\[0\]: expected an object"),
        ([{**RECEIPT, "sid": ""}], r"\[0\]\.sid"),
        ([{**RECEIPT, "report_status": "OK"}], "report_status"),
        ([{**RECEIPT, "mobile": "abc"}], "E.164"),
        ([{**RECEIPT, "user_receive_time": "yesterday"}], "user_receive_time"),
        ([RECEIPT, {**RECEIPT, "nationcode": None}], r"\[1\]\.nationcode"),
    ],
)
def test_bad_status_pushes_are_rejected(body: Any, message: str) -> None:
    """Each malformed status push names what is wrong."""
    with pytest.raises(PushError, match=message):
        parse_status_push(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([REPLY], "expected a JSON object"),
        ({**REPLY, "time": "soon"}, "body.time"),
        ({**REPLY, "time": -5}, "body.time"),
        ({**REPLY, "text": None}, "body.text"),
        ({**REPLY, "mobile": ""}, "body.mobile"),
    ],
)
def test_bad_reply_pushes_are_rejected(body: Any, message: str) -> None:
    """Each malformed reply push names what is wrong."""
    with pytest.raises(PushError, match=message):
        parse_reply_push(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)


@given(json_values)
def test_arbitrary_json_never_crashes_the_parsers(body: Any) -> None:
    """Whatever JSON arrives, the parsers answer a result or a PushError, nothing else."""
    for parse in (parse_status_push, parse_reply_push):
        with contextlib.suppress(PushError):
            parse(body)
