"""What Tencent documents about the SMS API, in one place: actions, limits, windows, time zone.

Sources: the API pages in ``shared/seeds`` and ``shared/reference/TENCENT.md``. The client, the
workers, the configuration's defaults and the emulator all read these; nothing here imports the
rest of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta, timezone
from enum import StrEnum

__all__ = [
    "BEIJING",
    "BY_NUMBER_LOOKBACK",
    "DEFAULT_RATE_LIMITS",
    "PAGE_LIMIT",
    "QUEUE_ACTIONS",
    "STATISTICS_RANGE",
    "Action",
]

DAY = 86_400


class Action(StrEnum):
    """The API actions we call; each value is the ``X-TC-Action`` name (and config key)."""

    PULL_SMS_REPLY_STATUS = "PullSmsReplyStatus"
    PULL_SMS_SEND_STATUS = "PullSmsSendStatus"
    PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER = "PullSmsSendStatusByPhoneNumber"
    PULL_SMS_REPLY_STATUS_BY_PHONE_NUMBER = "PullSmsReplyStatusByPhoneNumber"
    CALLBACK_STATUS_STATISTICS = "CallbackStatusStatistics"
    REPORT_CONVERSION = "ReportConversion"
    SEND_SMS = "SendSms"


# Queue mode: each record is handed out once, so an answer lost in flight loses its records.
QUEUE_ACTIONS = frozenset({Action.PULL_SMS_REPLY_STATUS, Action.PULL_SMS_SEND_STATUS})

# Requests per second per action, for the whole account (a Mapping: read it, never change it).
DEFAULT_RATE_LIMITS: Mapping[str, int] = {
    Action.PULL_SMS_REPLY_STATUS: 100,
    Action.PULL_SMS_SEND_STATUS: 100,
    Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER: 20,
    Action.PULL_SMS_REPLY_STATUS_BY_PHONE_NUMBER: 20,
    Action.CALLBACK_STATUS_STATISTICS: 10,
    Action.REPORT_CONVERSION: 1000,
    Action.SEND_SMS: 3000,
}

PAGE_LIMIT = 100  # the largest Limit of every pull action
BY_NUMBER_LOOKBACK = 7 * DAY  # the pull-by-number actions refuse an older BeginTime (seconds)
STATISTICS_RANGE = 32 * DAY  # CallbackStatusStatistics spans at most this (seconds)

# The API's wall-clock times (statistics hours, push receive times) are Beijing time.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
