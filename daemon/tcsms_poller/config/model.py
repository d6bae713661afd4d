"""The configuration of SPEC §4 as one frozen pydantic model; every check on values lives here.

Defaults are the documented ones (``config.example.yaml`` repeats them and a test keeps the two
in step). Sinks are not validated here but by their own type's ``Config`` (see ``loader``),
because a third-party sink's options are only known once its entry point is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from tcsms_poller.settings_types import (
    E164,
    ByteSize,
    ConfigModel,
    ConfigPath,
    Duration,
    Secret,
    SecretValue,
)
from tcsms_poller.sinks.base import SinkSettings
from tcsms_poller.tencent.api import (
    BY_NUMBER_LOOKBACK,
    DEFAULT_RATE_LIMITS,
    STATISTICS_RANGE,
    Action,
)

__all__ = [
    "AppSettings",
    "ByNumberSettings",
    "Config",
    "ConversionSettings",
    "LogSettings",
    "PollSettings",
    "RateLimits",
    "RetrySettings",
    "ServerSettings",
    "StateSettings",
    "StatisticsSettings",
    "TencentSettings",
    "TrackingSettings",
]

DAY = 86_400.0
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]{16,}$")
_PORT = re.compile(r"[0-9]{1,9}")
_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _at_most(seconds: float, limit: float, why: str) -> float:
    if seconds > limit:
        raise ValueError(f"must be at most {int(limit // DAY)}d ({why})")
    return seconds


def _rate(action: Action) -> Any:
    """A rate limit setting: Tencent's documented default, 1 to 10,000 a second."""
    return Field(default=DEFAULT_RATE_LIMITS[action], ge=1, le=10_000)


class RateLimits(ConfigModel):
    """Requests per second per action, for the whole process (Tencent's documented limits)."""

    PullSmsReplyStatus: int = _rate(Action.PULL_SMS_REPLY_STATUS)
    PullSmsSendStatus: int = _rate(Action.PULL_SMS_SEND_STATUS)
    PullSmsSendStatusByPhoneNumber: int = _rate(Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER)
    PullSmsReplyStatusByPhoneNumber: int = _rate(Action.PULL_SMS_REPLY_STATUS_BY_PHONE_NUMBER)
    CallbackStatusStatistics: int = _rate(Action.CALLBACK_STATUS_STATISTICS)
    ReportConversion: int = _rate(Action.REPORT_CONVERSION)
    SendSms: int = _rate(Action.SEND_SMS)  # the emulator serves it; the daemon does not send


class RetrySettings(ConfigModel):
    """Retries of transient API failures within one poll."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    max_backoff: Duration = 20.0


class TencentSettings(ConfigModel):
    """Credentials, endpoint and limits of the Tencent Cloud API."""

    secret_id: Secret
    secret_key: Secret
    token: Secret = SecretValue("")
    region: str = Field(default="ap-guangzhou", pattern=r"^[a-z]+(-[a-z]+)+$")
    endpoint: str = "https://sms.tencentcloudapi.com"
    timeout: Duration = 10.0
    queue_timeout: Duration = 60.0  # queue answers lost in flight lose their records
    rate_limits: RateLimits = RateLimits()
    retry: RetrySettings = RetrySettings()
    unhealthy_retry: Duration = 60.0

    @field_validator("secret_id", "secret_key")
    @classmethod
    def _not_empty(cls, value: SecretValue) -> SecretValue:
        if not value.reveal().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if _BLANK_OR_CONTROL.search(value):
            raise ValueError("must not contain spaces or control characters")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise ValueError(f"{value!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL like https://sms.tencentcloudapi.com"
            )
        return value


class PollSettings(ConfigModel):
    """A queue-mode source: on or off, and how often to pull."""

    enabled: bool = True
    interval: Duration = 2.0


class ByNumberSettings(ConfigModel):
    """Per-number pulls of send statuses (and optionally replies)."""

    enabled: bool = True
    numbers: tuple[E164, ...] = ()
    numbers_file: ConfigPath | None = None
    interval: Duration = 60.0
    lookback: Duration = DAY
    replies: bool = False

    @field_validator("lookback")
    @classmethod
    def _within_api_window(cls, value: float) -> float:
        return _at_most(value, BY_NUMBER_LOOKBACK, "the API cannot look further back")


class TrackingSettings(ConfigModel):
    """Tracked messages (``POST /v1/messages``): polled per number until their receipt."""

    enabled: bool = True
    first_poll: Duration = Field(default=15.0, gt=0)
    max_gap: Duration = Field(default=3600.0, gt=0)
    margin: Duration = 60.0
    give_up_after: Duration = 3 * DAY

    @field_validator("give_up_after")
    @classmethod
    def _within_api_window(cls, value: float) -> float:
        return _at_most(value, BY_NUMBER_LOOKBACK - DAY, "a receipt must still be pullable")


class StatisticsSettings(ConfigModel):
    """Hourly callback statistics."""

    enabled: bool = True
    interval: Duration = 300.0
    lookback: Duration = DAY

    @field_validator("lookback")
    @classmethod
    def _within_api_range(cls, value: float) -> float:
        return _at_most(value, STATISTICS_RANGE, "the API's longest range")


class ConversionSettings(ConfigModel):
    """Conversion reports queued through the listener or ``report-conversion``."""

    enabled: bool = True


class AppSettings(ConfigModel):
    """One SMS application (SdkAppId) and what to collect for it."""

    sms_sdk_app_id: str = Field(pattern=r"^[0-9]{4,20}$")
    replies: PollSettings = PollSettings()
    send_status: PollSettings = PollSettings(enabled=False)
    by_number: ByNumberSettings = ByNumberSettings()
    tracking: TrackingSettings = TrackingSettings()
    statistics: StatisticsSettings = StatisticsSettings()
    conversions: ConversionSettings = ConversionSettings()

    @field_validator("sms_sdk_app_id", mode="before")
    @classmethod
    def _digits_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 1400006666 as a number; the API wants the same digits as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class StateSettings(ConfigModel):
    """Where durable state lives and how long delivered ids are remembered.

    ``path`` is the SQLite file (the default); ``url`` (or ``url_file``), a
    ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` URL, puts the state in PostgreSQL instead
    (``path``'s directory still holds ``healthz.url``; the dead letters go to the database).
    """

    path: ConfigPath = Path("/var/lib/tcsms-poller/state.db")
    dedupe_ttl: Duration = 8 * DAY
    url: Secret | None = None
    pool_size: int = Field(default=10, ge=1, le=200)
    statement_timeout: Duration = 30.0
    # Cluster mode (with ``url``): this daemon's name among those sharing the database
    # (default hostname-pid), and how long a lease outlives its holder's last renewal.
    instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    lease_ttl: Duration = Field(default=10.0, ge=3.0, le=300.0)

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, value: SecretValue | None) -> SecretValue | None:
        # The message never echoes the value: it carries the password.
        if value is None:
            return None
        parts = urlsplit(value.reveal())
        if parts.scheme not in ("postgresql", "postgres") or not (parts.path or parts.query):
            raise ValueError(
                "must be a URL like postgresql://USER:PASSWORD@HOST:5432/DATABASE "
                "(or postgresql:///DATABASE?host=/run/postgresql for a local socket)"
            )
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise ValueError("the URL's port must be a number from 1 to 65535") from None
        return value

    @field_validator("statement_timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("must be at least 100ms")
        return value

    @field_validator("dedupe_ttl")
    @classmethod
    def _covers_api_window(cls, value: float) -> float:
        if value < BY_NUMBER_LOOKBACK:
            raise ValueError("must be at least 7d (the API hands out records up to 7 days old)")
        return value


class ServerSettings(ConfigModel):
    """The optional HTTP listener: callbacks, /v1, /healthz, /metrics."""

    listen: str = "127.0.0.1:8787"
    token: Secret
    callback_secret: Secret
    max_body: ByteSize = Field(default=1024 * 1024, ge=1024)  # a callback batch needs room
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    max_connections: int = Field(default=1024, ge=1, le=100_000)
    header_timeout: Duration = Field(default=10.0, gt=0)
    request_timeout: Duration = 30.0

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or _PORT.fullmatch(port) is None:
            raise ValueError(f"{value[:60]!r} is not HOST:PORT like 127.0.0.1:8787")
        if int(port) > 65_535:
            raise ValueError(f"port {int(port)} is out of range (0-65535; 0 picks a free one)")
        return value

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretValue) -> SecretValue:
        if len(value.reveal()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("callback_secret")
    @classmethod
    def _url_safe_secret(cls, value: SecretValue) -> SecretValue:
        if _URL_SAFE.match(value.reveal()) is None:
            raise ValueError("must be at least 16 characters of A-Z a-z 0-9 . _ ~ - (it is a path)")
        return value

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to bind (0 picks a free one)."""
        return int(self.listen.rpartition(":")[2])


class LogSettings(ConfigModel):
    """Log level and line format."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(ConfigModel):
    """Everything the daemon needs, validated at once."""

    tencent: TencentSettings
    apps: tuple[AppSettings, ...] = Field(min_length=1)
    state: StateSettings = StateSettings()
    server: ServerSettings | None = None
    sinks: tuple[SerializeAsAny[SinkSettings], ...] = Field(min_length=1)
    log: LogSettings = LogSettings()
    source: str = Field(default="<memory>", exclude=True)

    @field_validator("apps")
    @classmethod
    def _distinct_apps(cls, apps: tuple[AppSettings, ...]) -> tuple[AppSettings, ...]:
        _reject_repeats([app.sms_sdk_app_id for app in apps], "sms_sdk_app_id {} is listed twice")
        return apps

    @field_validator("sinks")
    @classmethod
    def _distinct_sinks(cls, sinks: tuple[SinkSettings, ...]) -> tuple[SinkSettings, ...]:
        _reject_repeats(
            [sink.sink_name for sink in sinks],
            "two sinks are named {!r}; give one a distinct name",
        )
        return sinks

    @model_validator(mode="after")
    def _no_file_sink_in_cluster(self) -> Config:
        # Several daemons share a PostgreSQL state, and any of them may drain a sink next: a
        # file on one machine's disk cannot follow that.
        if self.state.url is not None:
            for sink in self.sinks:
                if sink.type == "file":
                    raise ValueError(
                        f"sink {sink.sink_name!r}: a file sink cannot be used with state.url "
                        "(cluster mode: any daemon on the database may drain it, and a file "
                        "cannot follow it to another machine); use an http sink, stdout (the "
                        "container's log stream), or keep SQLite state (state.path) for a file"
                    )
        return self

    def secrets(self) -> list[SecretValue]:
        """Every non-empty secret in the configuration, for the log masker."""
        found: list[SecretValue] = []
        _collect_secrets(self, found)
        if self.state.url is not None:  # a driver's message may quote the password alone
            found.append(SecretValue(unquote(urlsplit(self.state.url.reveal()).password or "")))
        return [secret for secret in found if secret]


def _reject_repeats(names: list[str], message: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(message.format(name))
        seen.add(name)


def _collect_secrets(value: object, found: list[SecretValue]) -> None:
    if isinstance(value, SecretValue):
        found.append(value)
    elif isinstance(value, ConfigModel):
        found.extend(value.hidden_secrets())
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
    elif isinstance(value, tuple | list):
        for item in value:
            _collect_secrets(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_secrets(item, found)
