"""Everything the emulator can be told: credentials, apps, traffic, limits, faults, pushes.

One validated, frozen model, built in one step from the command line or directly in tests.
Times are seconds (floats); the command line accepts ``500ms``-style spellings and converts.
In-process the default is no synthetic traffic (tests inject exact records); the command line
turns traffic on unless told ``--no-traffic``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tcsms_poller.emulator_account import DEFAULT_APP_ID, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from tcsms_poller.settings_types import E164
from tcsms_poller.tencent.api import DEFAULT_RATE_LIMITS, Action
from tcsms_poller.units import parse_duration

__all__ = [
    "ACTIONS",
    "DEFAULT_APP_ID",
    "DEFAULT_RATE_LIMITS",
    "DEFAULT_SECRET_ID",
    "DEFAULT_SECRET_KEY",
    "LATE_DELAY",
    "NOT_ACTIVATED_CODES",
    "NO_FLAG",
    "SMS_REGIONS",
    "EmulatorOptions",
    "Fault",
    "FaultKind",
    "Flag",
    "PendingStatus",
    "PushOptions",
    "ReceiptDelays",
    "StatisticsEnd",
    "TrafficOptions",
    "WindowOrder",
    "WindowTime",
    "check_inactive",
    "parse_fault",
]


ACTIONS: tuple[str, ...] = tuple(Action)
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


@dataclass(frozen=True, slots=True)
class Flag:
    """How the command line (``emulator/cli.py``) offers a field, where it differs from the rule.

    The rule: every field is a flag ``--field-name`` (``--push-field-name`` inside ``push``),
    with a variable ``TCSMS_EMULATOR_FIELD_NAME``, the field's description as its help and its
    default shown; a tuple or mapping is a repeatable flag. Put a ``Flag`` in the field's
    ``Annotated`` metadata to say otherwise.
    """

    name: str = ""  # the flag's name when not the field's: --app-id for app_ids
    metavar: str | None = None
    group: str = ""  # the --help section; default: the model's
    parse: Callable[[str], Any] | None = None  # one value (or item) from its text; ValueError
    shown_default: str | None = None  # the default --help shows, when not the field's
    hidden: bool = False  # not on the command line at all


NO_FLAG = Flag(hidden=True)
DURATION = Flag(metavar="DURATION", parse=parse_duration)
FRACTION = Flag(metavar="FRACTION")
TRAFFIC_GROUP = "synthetic traffic"
WINDOWS_GROUP = "per-number actions (readings Tencent leaves open)"
LIMITS_GROUP = "rate limits and clock"
READINGS_GROUP = "the account and Tencent's undocumented readings"
FAULTS_GROUP = "faults and push callbacks"
RECEIPTS_GROUP = "receipts of messages sent through SendSms"


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


def parse_fault(text: str) -> Fault:
    """``ACTION:KIND=PROBABILITY[@VALUE]`` -> a fault rule."""
    target, sep, rest = text.partition(":")
    kind, equals, chance = rest.partition("=")
    probability, _, value = chance.partition("@")
    if not sep or not equals:
        raise ValueError("expected ACTION:KIND=PROBABILITY[@VALUE], like *:latency=0.1@300ms")
    fields: dict[str, Any] = {"action": target, "kind": kind, "probability": probability}
    if value and kind == "http_error":
        fields["status"] = value
    elif value and kind == "internal_error":
        fields["code"] = value
    elif value:
        fields["seconds"] = parse_duration(value)
    try:
        return Fault.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _rate_limit(text: str) -> tuple[str, int]:
    action, sep, rate = text.partition("=")
    if not sep or not rate.isdigit():
        raise ValueError("expected ACTION=N, like PullSmsSendStatus=100")
    return action, int(rate)


def _inactive(text: str) -> tuple[str, str]:
    action, _, code = text.partition("=")
    return action, code or NOT_ACTIVATED_CODES[0]


class TrafficOptions(_Model):
    """Synthetic traffic: messages sent to a set of numbers, their receipts, and replies.

    ``phone_numbers``, when given, is the set; otherwise ``numbers`` mainland numbers are made up
    from the seed. The first ``heavy_numbers`` numbers get ``heavy_share`` of all messages, so
    their per-number queries need paging. A ``pending_share`` of the receipts first show as
    placeholders without ReportStatus (``store.py``), from the send until the final receipt. A
    ``late_share`` of the receipts comes ``LATE_DELAY`` after its message (a phone switched
    off), the rest ``receipt_delay_min`` to ``_max`` after.
    """

    numbers: Annotated[int, Flag(metavar="N")] = Field(
        default=20, ge=1, description="how many made-up numbers"
    )
    phone_numbers: Annotated[tuple[E164, ...], Flag(name="--number", metavar="E164")] = Field(
        default=(), description="a number to send to instead"
    )
    heavy_numbers: Annotated[int, Flag(metavar="N")] = Field(
        default=2, ge=0, description="numbers that get --heavy-share of all messages"
    )
    heavy_share: Annotated[float, FRACTION] = Field(
        default=0.5, ge=0.0, le=1.0, description="the share of all messages the heavy numbers get"
    )
    send_rate: Annotated[float, Flag(metavar="PER_SECOND")] = Field(
        default=5.0, ge=0.0, description="messages per second, all apps"
    )
    reply_rate: Annotated[float, Flag(metavar="PER_SECOND")] = Field(
        default=0.2, ge=0.0, description="replies per second, all apps"
    )
    receipt_delay_min: Annotated[float, DURATION] = Field(
        default=0.5, ge=0.0, description="the shortest time from a send to its receipt"
    )
    receipt_delay_max: Annotated[float, DURATION] = Field(
        default=5.0, ge=0.0, description="the longest time from a send to its receipt"
    )
    fail_ratio: Annotated[float, FRACTION] = Field(
        default=0.08, ge=0.0, le=1.0, description="failed receipts"
    )
    pending_share: Annotated[float, FRACTION] = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="receipts that first show without ReportStatus, from their send until the "
        "final one",
    )
    late_share: Annotated[float, FRACTION] = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="receipts that come {:g}-{:g} min after their send".format(
            *(seconds / 60 for seconds in LATE_DELAY)
        ),
    )
    backfill: Annotated[float, DURATION] = Field(
        default=600.0, ge=0.0, le=7 * 86_400, description="history generated at start (at most 7d)"
    )
    sign_name: Annotated[str, NO_FLAG] = "Tencent Cloud"

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

    median: Annotated[float, DURATION] = Field(default=5.0, gt=0.0, description="median delay")
    p95: Annotated[float, DURATION] = Field(
        default=60.0, gt=0.0, description="95 % of receipts within"
    )
    late_share: Annotated[float, FRACTION] = Field(
        default=0.01, ge=0.0, le=1.0, description="receipts 1-6 h late"
    )
    late_delay: Annotated[tuple[float, float], NO_FLAG] = (3600.0, 6 * 3600.0)
    never_share: Annotated[float, FRACTION] = Field(
        default=0.005, ge=0.0, le=1.0, description="receipts that never come"
    )
    fail_ratio: Annotated[float, NO_FLAG] = Field(default=0.08, ge=0.0, le=1.0)
    scale: Annotated[float, Flag(metavar="FACTOR")] = Field(
        default=1.0, gt=0.0, description="multiplies every delay; below 1 compresses time"
    )

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

    status_url: str | None = Field(default=None, description="where receipts are pushed")
    reply_url: str | None = Field(default=None, description="where replies are pushed")
    interval: Annotated[float, DURATION] = Field(
        default=1.0, gt=0.0, description="how long receipts are batched"
    )
    retries: Annotated[int, NO_FLAG] = Field(default=2, ge=0)
    retry_delay: Annotated[float, DURATION] = Field(
        default=1.0, ge=0.0, description="between a failed push and its retry"
    )
    timeout: Annotated[float, NO_FLAG] = Field(default=5.0, gt=0.0)

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

    host: Annotated[str, NO_FLAG] = "127.0.0.1"  # the command line's --listen
    port: Annotated[int, NO_FLAG] = Field(default=0, ge=0, le=65535)
    secret_id: str = Field(default=DEFAULT_SECRET_ID, description="the only SecretId accepted")
    secret_key: str = Field(default=DEFAULT_SECRET_KEY, repr=False, description="its SecretKey")
    app_ids: Annotated[tuple[str, ...], Flag(name="--app-id", metavar="ID")] = Field(
        default=(DEFAULT_APP_ID,), min_length=1, description="an SdkAppId of the account"
    )
    seed: int | None = Field(default=None, description="makes traffic repeatable")
    traffic: TrafficOptions | None = None
    rate_limits: Annotated[
        Mapping[str, int],
        Flag(
            name="--rate-limit",
            metavar="ACTION=N",
            group=LIMITS_GROUP,
            parse=_rate_limit,
            shown_default="Tencent's documented limits",
        ),
    ] = Field(default=DEFAULT_RATE_LIMITS, description="requests per second")
    slack: Annotated[float, Flag(metavar="DURATION", group=LIMITS_GROUP, parse=parse_duration)] = (
        Field(default=0.010, ge=0.0, lt=1.0, description="the limit's window is 1s minus this")
    )
    limit_horizon: Annotated[int, NO_FLAG] = Field(default=2, ge=1, le=60)
    max_skew: Annotated[
        float, Flag(metavar="DURATION", group=LIMITS_GROUP, parse=parse_duration)
    ] = Field(default=300.0, ge=0.0, description="accepted client clock difference")
    faults: Annotated[
        tuple[Fault, ...],
        Flag(name="--fault", metavar="SPEC", group=FAULTS_GROUP, parse=parse_fault),
    ] = Field(default=(), description="ACTION:KIND=PROBABILITY[@VALUE] (see below)")
    push: PushOptions = PushOptions()
    receipts: ReceiptDelays = ReceiptDelays()  # of messages sent through SendSms
    statistics_end: Annotated[StatisticsEnd, Flag(metavar="READING", group=READINGS_GROUP)] = Field(
        default=StatisticsEnd.INCLUSIVE,
        description="CallbackStatusStatistics' EndTime: inclusive (EndTime >= BeginTime, the "
        "end hour counted) or exclusive (EndTime must be after BeginTime)",
    )
    inactive: Annotated[
        Mapping[str, str],
        Flag(metavar="ACTION[=CODE]", group=READINGS_GROUP, parse=_inactive),
    ] = Field(
        default_factory=dict,
        description="an action Tencent has not activated on the account; refused with CODE "
        f"(one of {', '.join(NOT_ACTIVATED_CODES)}; default the first)",
    )
    regions: Annotated[
        tuple[str, ...], Flag(name="--region", metavar="REGION", group=READINGS_GROUP)
    ] = Field(default=SMS_REGIONS, min_length=1, description="a region the API accepts")
    # How a receipt's ReportStatus shows before the carrier reported (traffic.pending_share,
    # or injected with "pending"): "" (empty), null, or left out (absent). Not documented.
    pending_status: Annotated[PendingStatus, Flag(metavar="FORM", group=TRAFFIC_GROUP)] = Field(
        default="empty",
        description="how ReportStatus shows before the carrier reported: empty, null or absent",
    )
    by_number_time: Annotated[WindowTime, Flag(group=WINDOWS_GROUP)] = Field(
        default=WindowTime.RECEIVE, description="the time BeginTime/EndTime filter on"
    )
    by_number_order: Annotated[WindowOrder, Flag(group=WINDOWS_GROUP)] = Field(
        default=WindowOrder.ASC, description="the order of a window's records"
    )

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
