"""Everything the emulator can be told: credentials, apps, traffic, limits, faults, pushes.

One validated, frozen model, built in one step from the command line or directly in tests.
Times are seconds (floats); the command line accepts ``500ms``-style spellings and converts.
In-process the default is no synthetic traffic (tests inject exact records); the command line
turns traffic on unless told ``--no-traffic``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tcsms_poller.fields import E164

__all__ = [
    "ACTIONS",
    "DEFAULT_APP_ID",
    "DEFAULT_RATE_LIMITS",
    "DEFAULT_SECRET_ID",
    "DEFAULT_SECRET_KEY",
    "LATE_DELAY",
    "NOT_ACTIVATED_CODES",
    "SMS_REGIONS",
    "EmulatorOptions",
    "Fault",
    "FaultKind",
    "PendingStatus",
    "PushOptions",
    "ReceiptDelays",
    "StatisticsEnd",
    "TrafficOptions",
    "WindowOrder",
    "WindowTime",
    "check_inactive",
]

# Published fakes, not secrets: every emulator accepts them unless told otherwise.
DEFAULT_SECRET_ID = "AKIDEMULATOR000000000000000000000000"  # noqa: S105
DEFAULT_SECRET_KEY = "emulatorsecretkey000000000000000"  # noqa: S105
DEFAULT_APP_ID = "1400006666"

# Requests per second per action, from Tencent's API pages (see shared/seeds and TENCENT.md).
DEFAULT_RATE_LIMITS: Mapping[str, int] = {
    "PullSmsReplyStatus": 100,
    "PullSmsSendStatus": 100,
    "SendSms": 3000,
    "PullSmsSendStatusByPhoneNumber": 20,
    "PullSmsReplyStatusByPhoneNumber": 20,
    "CallbackStatusStatistics": 10,
    "ReportConversion": 1000,
}
ACTIONS: tuple[str, ...] = tuple(DEFAULT_RATE_LIMITS)
LATE_DELAY = (600.0, 2400.0)  # seconds from send to a late receipt: a phone off for a while

# X-TC-Region values the SMS API accepts: the Chinese site's region list for SMS (Beijing,
# Guangzhou, Nanjing; the page the SDK samples link to) and ap-singapore, which the international
# site's SMS SDK guide uses. ``regions`` (--region) replaces the list.
SMS_REGIONS: tuple[str, ...] = ("ap-beijing", "ap-guangzhou", "ap-nanjing", "ap-singapore")

# What an action Tencent has not activated on the account answers. Undocumented: the first is the
# default, the others are as plausible (the SDK's code, and the seeds' spelling of it).
NOT_ACTIVATED_CODES: tuple[str, ...] = (
    "UnauthorizedOperation.RequestPermissionDeny",
    "UnsupportedOperation",
    "UnsupportedOperation.",
)


def check_inactive(inactive: Mapping[str, str]) -> Mapping[str, str]:
    """Actions not activated, each with a known action name and a plausible refusal code."""
    for action, code in inactive.items():
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        if code not in NOT_ACTIVATED_CODES:
            raise ValueError(f"code {code!r}: use one of {', '.join(NOT_ACTIVATED_CODES)}")
    return inactive


class StatisticsEnd(StrEnum):
    """How ``CallbackStatusStatistics`` reads ``EndTime`` (see ``actions.py``)."""

    INCLUSIVE = "inclusive"  # EndTime >= BeginTime; the end hour is counted (the SDK models)
    EXCLUSIVE = "exclusive"  # EndTime > BeginTime; counting stops before it (the older page)


# How a receipt's ReportStatus shows before the carrier reported (see EmulatorOptions).
PendingStatus = Literal["empty", "null", "absent"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultKind(StrEnum):
    """What a fault does to one request; see ``faults.py`` for when each one strikes."""

    LATENCY = "latency"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    INTERNAL_ERROR = "internal_error"
    RATE_LIMIT = "rate_limit"
    LOST_TIMEOUT = "lost_timeout"
    LOST_TRUNCATED = "lost_truncated"

    @property
    def strikes_after(self) -> bool:
        """Whether the action runs first (a queue hands records out) and its answer is lost."""
        return self in (FaultKind.LOST_TIMEOUT, FaultKind.LOST_TRUNCATED)


class WindowTime(StrEnum):
    """Which time the per-number actions' ``[BeginTime, EndTime]`` filters on (undocumented)."""

    RECEIVE = "receive"  # UserReceiveTime
    SEND = "send"  # when the message was sent (the 2019 API called it SendDateTime)


class WindowOrder(StrEnum):
    """In which order the per-number actions answer (undocumented); a full page is the first
    100 records in this order."""

    ASC = "asc"
    DESC = "desc"


# The parameter a kind uses when none is given: seconds, or an HTTP status for http_error.
_DEFAULT_SECONDS = {
    FaultKind.LATENCY: 0.5,
    FaultKind.TIMEOUT: 30.0,
    FaultKind.RATE_LIMIT: 1.0,
    FaultKind.LOST_TIMEOUT: 90.0,  # longer than the daemon's 60 s queue timeout
}


class Fault(_Model):
    """One fault rule: ``kind`` strikes a request of ``action`` (``*``: any) with ``probability``.

    ``seconds`` is the added delay (latency), how long the connection is held (timeout,
    lost_timeout) or how long the burst of ``RequestLimitExceeded`` lasts (rate_limit);
    ``status`` is the HTTP status of http_error; ``code`` picks the ``InternalError.*`` code
    (default: a random documented one).
    """

    action: str = "*"
    kind: FaultKind
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    seconds: float | None = Field(default=None, ge=0.0)
    status: int = Field(default=503, ge=500, le=599)
    code: str | None = None

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        if action != "*" and action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: use * or one of {', '.join(ACTIONS)}")
        return action

    @field_validator("code")
    @classmethod
    def _internal_code(cls, code: str | None) -> str | None:
        if code is not None and not code.startswith("InternalError"):
            raise ValueError(f"code {code!r} must be an InternalError.* code")
        return code

    @property
    def duration(self) -> float:
        """``seconds``, or the kind's default."""
        return self.seconds if self.seconds is not None else _DEFAULT_SECONDS.get(self.kind, 0.0)


class TrafficOptions(_Model):
    """Synthetic traffic: messages sent to a set of numbers, their receipts, and replies.

    ``phone_numbers``, when given, is the set; otherwise ``numbers`` mainland numbers are made up
    from the seed. The first ``heavy_numbers`` numbers get ``heavy_share`` of all messages, so
    their per-number queries need paging. A ``pending_share`` of the receipts first show as
    placeholders without ReportStatus (``store.py``), from the send until the final receipt. A
    ``late_share`` of the receipts comes ``LATE_DELAY`` after its message (a phone switched
    off), the rest ``receipt_delay_min`` to ``_max`` after.
    """

    numbers: int = Field(default=20, ge=1)
    phone_numbers: tuple[E164, ...] = ()
    heavy_numbers: int = Field(default=2, ge=0)
    heavy_share: float = Field(default=0.5, ge=0.0, le=1.0)
    send_rate: float = Field(default=5.0, ge=0.0, description="messages per second, all apps")
    reply_rate: float = Field(default=0.2, ge=0.0, description="replies per second, all apps")
    receipt_delay_min: float = Field(default=0.5, ge=0.0)
    receipt_delay_max: float = Field(default=5.0, ge=0.0)
    fail_ratio: float = Field(default=0.08, ge=0.0, le=1.0)
    pending_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="receipts that show without ReportStatus from their send until final",
    )
    late_share: float = Field(default=0.0, ge=0.0, le=1.0)
    backfill: float = Field(default=600.0, ge=0.0, le=7 * 86_400)
    sign_name: str = "Tencent Cloud"

    @model_validator(mode="after")
    def _delays_ordered(self) -> TrafficOptions:
        if self.receipt_delay_max < self.receipt_delay_min:
            raise ValueError("receipt_delay_max must not be less than receipt_delay_min")
        return self


class ReceiptDelays(_Model):
    """When the receipt of a message sent through ``SendSms`` comes (``sending.py``).

    A log-normal delay with ``median`` and 95 % within ``p95``; a ``late_share`` of receipts
    comes ``late_delay`` after the send (hours: a phone off), a ``never_share`` never comes.
    ``scale`` multiplies every delay (0.01 makes an hour 36 s, for benchmarks). Seeded by the
    emulator's ``seed``.
    """

    median: float = Field(default=5.0, gt=0.0)
    p95: float = Field(default=60.0, gt=0.0)
    late_share: float = Field(default=0.01, ge=0.0, le=1.0)
    late_delay: tuple[float, float] = (3600.0, 6 * 3600.0)
    never_share: float = Field(default=0.005, ge=0.0, le=1.0)
    fail_ratio: float = Field(default=0.08, ge=0.0, le=1.0)
    scale: float = Field(default=1.0, gt=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> ReceiptDelays:
        if self.p95 < self.median:
            raise ValueError("p95 must not be less than median")
        if self.late_share + self.never_share > 1.0:
            raise ValueError("late_share + never_share must be at most 1")
        low, high = self.late_delay
        if not 0.0 <= low <= high:
            raise ValueError("late_delay must be (low, high) with 0 <= low <= high")
        return self


class PushOptions(_Model):
    """Tencent-style push callbacks; each URL is optional and off when ``None``.

    Receipts are batched for up to ``interval`` seconds (at most 100 a batch); a failed push is
    retried ``retries`` times, ``retry_delay`` apart, then given up (it stays pullable).
    """

    status_url: str | None = None
    reply_url: str | None = None
    interval: float = Field(default=1.0, gt=0.0)
    retries: int = Field(default=2, ge=0)
    retry_delay: float = Field(default=1.0, ge=0.0)
    timeout: float = Field(default=5.0, gt=0.0)

    @field_validator("status_url", "reply_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @property
    def enabled(self) -> bool:
        """Whether anything is pushed at all."""
        return bool(self.status_url or self.reply_url)


class EmulatorOptions(_Model):
    """The whole emulator configuration.

    ``by_number_time`` and ``by_number_order`` play each reading of what Tencent leaves open
    about the per-number actions. A reply's send time is its reply time, so for replies only
    the order differs.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    secret_id: str = DEFAULT_SECRET_ID
    secret_key: str = Field(default=DEFAULT_SECRET_KEY, repr=False)
    app_ids: tuple[str, ...] = Field(default=(DEFAULT_APP_ID,), min_length=1)
    seed: int | None = None
    traffic: TrafficOptions | None = None
    rate_limits: Mapping[str, int] = DEFAULT_RATE_LIMITS
    slack: float = Field(default=0.010, ge=0.0, lt=1.0)
    limit_horizon: int = Field(default=2, ge=1, le=60)
    max_skew: float = Field(default=300.0, ge=0.0)
    faults: tuple[Fault, ...] = ()
    push: PushOptions = PushOptions()
    receipts: ReceiptDelays = ReceiptDelays()  # of messages sent through SendSms
    statistics_end: StatisticsEnd = StatisticsEnd.INCLUSIVE
    inactive: Mapping[str, str] = Field(
        default_factory=dict, description="action -> the code it is refused with"
    )
    regions: tuple[str, ...] = Field(default=SMS_REGIONS, min_length=1)
    # How a receipt's ReportStatus shows before the carrier reported (traffic.pending_share,
    # or injected with "pending"): "" (empty), null, or left out (absent). Not documented.
    pending_status: PendingStatus = "empty"
    by_number_time: WindowTime = WindowTime.RECEIVE
    by_number_order: WindowOrder = WindowOrder.ASC

    @field_validator("app_ids")
    @classmethod
    def _numeric_app_ids(cls, app_ids: tuple[str, ...]) -> tuple[str, ...]:
        for app_id in app_ids:
            if not app_id.isdigit():
                raise ValueError(f"app id {app_id!r} must be digits, like {DEFAULT_APP_ID}")
        return app_ids

    @field_validator("inactive")
    @classmethod
    def _inactive_actions(cls, inactive: Mapping[str, str]) -> Mapping[str, str]:
        return check_inactive(inactive)

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _complete_limits(cls, given: Any) -> Any:
        """Given limits override the documented defaults; the other actions keep theirs."""
        if not isinstance(given, Mapping):
            return given
        for action, rate in given.items():
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
            if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
                raise ValueError(f"{action}: the limit must be a whole number of at least 1")
        return {**DEFAULT_RATE_LIMITS, **given}
