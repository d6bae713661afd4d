"""Tencent's push callbacks (sending status, replies) parsed into the pulled types.

A pushed receipt becomes the same ``SendStatus`` a pull would give (plus the push's human-readable
``description``, which a pull does not carry), and a pushed reply the same ``ReplyStatus``, so
both end in the same record with the same id and dedupe merges them.

Pushes are not signed by Tencent: validate everything, trust nothing. A body that is not what
Tencent sends at all (not an array of objects, not one reply object) is a ``PushError``; within a
well-shaped body each item stands alone, as in a pulled page (``models.parse_items``): an odd
item is rejected with its reason (to be quarantined), a receipt without a final status is only
counted as pending, and the good items go through. Tencent retries a failed push only twice, so
refusing a whole push for one odd item would lose its good receipts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from tcsms_poller.numbers_ascii import MAX_UNIX_TIME, parse_ascii_int
from tcsms_poller.settings_types import is_e164
from tcsms_poller.tencent.api import BEIJING
from tcsms_poller.tencent.models import (
    ItemError,
    Page,
    ReplyStatus,
    SendStatus,
    final_report_status,
    parse_items,
)

__all__ = [
    "MAX_STATUS_BATCH",
    "PushError",
    "PushedStatus",
    "parse_reply_push",
    "parse_status_push",
]

MAX_STATUS_BATCH = 100  # Tencent sends at most 100 receipts per push


class PushError(ValueError):
    """The pushed body is not what Tencent sends; the message says what is wrong."""


class PushedStatus(NamedTuple):
    """A pushed receipt: what a pull gives, and the push's human-readable ``description``."""

    status: SendStatus
    text: str | None


def _string(item: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or (required and not value):
        raise ItemError(f"{key}: expected a non-empty string")
    return value


def _phone(item: Mapping[str, Any]) -> tuple[str, str, str]:
    nationcode = _string(item, "nationcode").lstrip("+")
    mobile = _string(item, "mobile")
    number = mobile if mobile.startswith("+") else f"+{nationcode}{mobile}"
    if not is_e164(number):
        raise ItemError("nationcode and mobile do not form an E.164 number")
    subscriber = number[1 + len(nationcode) :] if mobile.startswith("+") else mobile
    return number, nationcode, subscriber


def _beijing_time(text: str) -> int:
    try:
        if not text.isascii():  # strptime's digits are any script's
            raise ValueError(text)
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        seconds = int(moment.timestamp())
    except (ValueError, OverflowError):
        seconds = -1
    if seconds < 0:
        raise ItemError("user_receive_time: expected 'YYYY-MM-DD HH:MM:SS' (from 1970 on)")
    return seconds


def _pushed_status(item: Mapping[str, Any]) -> PushedStatus:
    serial_no = _string(item, "sid")
    number, nationcode, subscriber = _phone(item)
    report_status = final_report_status(item.get("report_status"), key="report_status")
    ext = item.get("ext")  # not documented by Tencent; a string is taken as the SessionContext
    status = SendStatus(
        serial_no=serial_no,
        phone_number=number,
        country_code=nationcode,
        subscriber_number=subscriber,
        report_status=report_status,
        # The carrier code (DELIVRD), as a pulled receipt's Description; never the text.
        description=_string(item, "errmsg", required=False),
        user_receive_time=_beijing_time(_string(item, "user_receive_time")),
        session_context=ext if isinstance(ext, str) and ext else None,
    )
    return PushedStatus(status, _string(item, "description", required=False) or None)


def _pushed_reply(item: Mapping[str, Any]) -> ReplyStatus:
    number, nationcode, subscriber = _phone(item)
    reply_time = parse_ascii_int(item.get("time"), maximum=MAX_UNIX_TIME)
    if reply_time is None:
        raise ItemError("time: expected a UNIX time in seconds")
    text = item.get("text")
    if not isinstance(text, str):
        raise ItemError("text: expected a string")
    return ReplyStatus(
        phone_number=number,
        country_code=nationcode,
        subscriber_number=subscriber,
        sign_name=_string(item, "sign", required=False),
        reply_content=text,
        reply_time=reply_time,
        extend_code=_string(item, "extend", required=False),
    )


def parse_status_push(body: Any) -> Page[PushedStatus]:
    """A sending-status push: a JSON array of up to 100 receipts, each parsed on its own."""
    if not isinstance(body, list) or not body:
        raise PushError("body: expected a non-empty JSON array of receipts")
    if len(body) > MAX_STATUS_BATCH:
        raise PushError(f"body: at most {MAX_STATUS_BATCH} receipts per push")
    return parse_items(body, _pushed_status)


def parse_reply_push(body: Any) -> Page[ReplyStatus]:
    """A reply push: one object with extend, mobile, nationcode, sign, text, time."""
    if not isinstance(body, dict):
        raise PushError("body: expected a JSON object")
    return parse_items([body], _pushed_reply)
