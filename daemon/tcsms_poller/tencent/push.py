"""Tencent's push callbacks (sending status, replies) parsed into the pulled types.

A pushed receipt becomes the same ``SendStatus`` a pull would give, and a pushed reply the same
``ReplyStatus``, so both end in the same record with the same id and dedupe merges them.
Pushes are not signed by Tencent: validate everything, trust nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tcsms_poller.fields import is_e164
from tcsms_poller.numbers_ascii import MAX_UNIX_TIME, parse_ascii_int
from tcsms_poller.records import BEIJING
from tcsms_poller.tencent.models import ReplyStatus, SendStatus

__all__ = ["MAX_STATUS_BATCH", "PushError", "parse_reply_push", "parse_status_push"]

MAX_STATUS_BATCH = 100  # Tencent sends at most 100 receipts per push


class PushError(ValueError):
    """The pushed body is not what Tencent sends; the message names the field."""


def _string(item: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or (required and not value):
        raise PushError(f"{where}.{key}: expected a non-empty string")
    return value


def _phone(item: Mapping[str, Any], where: str) -> tuple[str, str, str]:
    nationcode = _string(item, "nationcode", where).lstrip("+")
    mobile = _string(item, "mobile", where)
    number = mobile if mobile.startswith("+") else f"+{nationcode}{mobile}"
    if not is_e164(number):
        raise PushError(f"{where}: nationcode and mobile do not form an E.164 number")
    subscriber = number[1 + len(nationcode) :] if mobile.startswith("+") else mobile
    return number, nationcode, subscriber


def _beijing_time(text: str, where: str) -> int:
    try:
        if not text.isascii():  # strptime's digits are any script's
            raise ValueError(text)
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise PushError(f"{where}.user_receive_time: expected 'YYYY-MM-DD HH:MM:SS'") from None
    return int(moment.timestamp())


def parse_status_push(body: Any) -> list[SendStatus]:
    """A sending-status push: a JSON array of up to 100 receipts."""
    if not isinstance(body, list) or not body:
        raise PushError("body: expected a non-empty JSON array of receipts")
    if len(body) > MAX_STATUS_BATCH:
        raise PushError(f"body: at most {MAX_STATUS_BATCH} receipts per push")
    statuses = []
    for index, item in enumerate(body):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise PushError(f"{where}: expected an object")
        number, nationcode, subscriber = _phone(item, where)
        report_status = _string(item, "report_status", where)
        if report_status not in ("SUCCESS", "FAIL"):
            raise PushError(f"{where}.report_status: expected SUCCESS or FAIL")
        errmsg = _string(item, "errmsg", where, required=False)
        ext = item.get("ext")
        statuses.append(
            SendStatus(
                serial_no=_string(item, "sid", where),
                phone_number=number,
                country_code=nationcode,
                subscriber_number=subscriber,
                report_status=report_status,
                # Pulled receipts carry the carrier code (DELIVRD) as Description; so does errmsg.
                description=errmsg or _string(item, "description", where, required=False),
                user_receive_time=_beijing_time(_string(item, "user_receive_time", where), where),
                session_context=ext if isinstance(ext, str) and ext else None,
            )
        )
    return statuses


def parse_reply_push(body: Any) -> ReplyStatus:
    """A reply push: one object with extend, mobile, nationcode, sign, text, time."""
    if not isinstance(body, dict):
        raise PushError("body: expected a JSON object")
    number, nationcode, subscriber = _phone(body, "body")
    reply_time = parse_ascii_int(body.get("time"), maximum=MAX_UNIX_TIME)
    if reply_time is None:
        raise PushError("body.time: expected a UNIX time in seconds")
    text = body.get("text")
    if not isinstance(text, str):
        raise PushError("body.text: expected a string")
    return ReplyStatus(
        phone_number=number,
        country_code=nationcode,
        subscriber_number=subscriber,
        sign_name=_string(body, "sign", "body", required=False),
        reply_content=text,
        reply_time=reply_time,
        extend_code=_string(body, "extend", "body", required=False),
    )
