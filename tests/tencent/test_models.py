"""Parsing API items: the one-step check of well-formed items agrees with the field-by-field one."""

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
    _checked_reply,
    _checked_send_status,
    _reply,
    _send_status,
)

# What Tencent could send in a field, well formed or not.
values = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-5, max_value=2**40),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.floats(allow_nan=False),
)


def items(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Items with any subset of ``keys`` present, each holding any of ``values``."""
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


def outcome(parse: Any, item: dict[str, Any]) -> object:
    try:
        return parse(item)
    except ItemError as error:
        return ("rejected", str(error))


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
    receipt = dict.fromkeys(_SEND_STATUS_KEYS, "x") | {"UserReceiveTime": 1764000000}
    for context in ("order-1", None):
        parsed = _send_status(receipt | {"SessionContext": context})
        assert parsed == checked_receipt(receipt | {"SessionContext": context})
        assert parsed.session_context == context
    reply = dict.fromkeys(_REPLY_KEYS, "y") | {"ReplyTime": 1764000001}
    assert _reply(reply).reply_time == 1764000001
