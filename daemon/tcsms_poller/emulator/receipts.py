"""One receipt of a sent message, as synthetic traffic and ``SendSms`` both make it."""

from __future__ import annotations

import random

from tcsms_poller.emulator.numbers import split_number
from tcsms_poller.emulator.outcomes import FAILURES, SUCCESS, Outcome
from tcsms_poller.emulator.store import SendStatusRecord

__all__ = ["draw_outcome", "make_receipt"]

_FAILURE_WEIGHTS = [outcome.weight for outcome in FAILURES]


def draw_outcome(rng: random.Random, fail_ratio: float) -> Outcome:
    """Delivered, or one of the carrier's failures by their weights, ``fail_ratio`` of the time."""
    if rng.random() < fail_ratio:
        return rng.choices(FAILURES, weights=_FAILURE_WEIGHTS)[0]
    return SUCCESS


def make_receipt(
    app_id: str,
    serial_no: str,
    number: str,
    outcome: Outcome,
    *,
    due: float,
    sent_at: float,
    context: str | None,
) -> SendStatusRecord:
    """The receipt of a message to ``number`` sent at ``sent_at``, received at ``due``."""
    country_code, subscriber = split_number(number)
    return SendStatusRecord(
        app_id=app_id,
        serial_no=serial_no,
        phone_number=number,
        country_code=country_code,
        subscriber_number=subscriber,
        report_status=outcome.report_status,
        description=outcome.code,
        user_receive_time=int(due),
        session_context=context,
        send_time=int(sent_at),
    )
