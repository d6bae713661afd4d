"""``tcsms-poller emulator``: the fake Tencent SMS API alone, until SIGTERM or SIGINT (exit 0).

The first line on stdout is ``emulator listening on http://HOST:PORT``, so a script or test can
start it with ``--listen 127.0.0.1:0`` and read the port. Logs go to stderr. Values are checked
here rather than by argparse so that a bad one is a single line naming the flag (exit 2).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import structlog
from pydantic import ValidationError

from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    NOT_ACTIVATED_CODES,
    SMS_REGIONS,
    EmulatorOptions,
    Fault,
    WindowOrder,
    WindowTime,
    run_emulator,
)
from tcsms_poller.emulator.options import LATE_DELAY
from tcsms_poller.exits import EX_FAILURE, EX_OK, UsageError
from tcsms_poller.logs import configure_logging
from tcsms_poller.units import parse_duration

__all__ = [
    "add_arguments",
    "build_options",
    "environment_variable",
    "execute",
    "parse_fault",
    "parse_listen",
]

log = structlog.get_logger("tcsms_poller.emulator")
T = TypeVar("T")

ENVIRONMENT_PREFIX = "TCSMS_EMULATOR_"
_REPEATABLE = frozenset(
    {"app_ids", "phone_numbers", "rate_limits", "faults", "inactive", "regions"}
)

FAULTS_HELP = """\
faults: --fault ACTION:KIND=PROBABILITY[@VALUE], repeatable; ACTION is an action name or *.
  KIND        VALUE (optional)              effect
  latency     duration (default 500ms)      answer late, then normally
  timeout     duration (default 30s)        hold the connection, then InternalError.SendAndRecvFail
  http_error  HTTP status (default 503)     an HTML error page
  malformed   -                             HTTP 200 with a body that is not JSON
  truncated   -                             HTTP 200 with half a JSON answer
  internal_error  code (default: random)    an InternalError.* answer
  rate_limit  duration (default 1s)         RequestLimitExceeded for that long
  lost_timeout  duration (default 90s)      run the action, hold its answer that long, send it late
  lost_truncated  -                         run the action, send half of its answer
  The lost_* faults strike after the action runs: a queue pull hands its records out and they
  are gone. The others strike before it and never consume queue records.
  example: --fault 'PullSmsSendStatus:http_error=0.05@502' --fault '*:latency=0.2@300ms'
"""

CONTROL_HELP = f"""\
a daemon configured for the emulator (its defaults):
  tencent:
    secret_id: {DEFAULT_SECRET_ID}
    secret_key: {DEFAULT_SECRET_KEY}
    endpoint: http://127.0.0.1:9000
  apps: [{{sms_sdk_app_id: "{DEFAULT_APP_ID}"}}]

control routes (JSON, no authentication; what tests and benchmarks use):
  GET  /_emulator/stats     requests, rate-limit hits, errors and faults per action; pushes
  GET  /_emulator/truth     every record created, and when a queue pull handed it out
  POST /_emulator/records   inject exact records: {{"send_statuses": [...], "replies": [...]}}
  GET  /_emulator/faults    the fault rules in force
  POST /_emulator/faults    replace them: {{"faults": [...]}}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's flags; values are strings, checked by ``build_options``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    first_option = len(parser._actions)  # the command's own options come after the common ones
    add = parser.add_argument
    add(
        "--listen",
        default="127.0.0.1:9000",
        metavar="HOST:PORT",
        help="address to serve on; port 0 picks a free one (default: %(default)s)",
    )
    add(
        "--secret-id",
        default=DEFAULT_SECRET_ID,
        help="the only SecretId accepted (default: %(default)s)",
    )
    add(
        "--secret-key",
        default=DEFAULT_SECRET_KEY,
        help="its SecretKey (default: %(default)s)",
    )
    add(
        "--app-id",
        action="append",
        dest="app_ids",
        metavar="ID",
        help=f"an SdkAppId of the account, repeatable (default: {DEFAULT_APP_ID})",
    )
    add("--seed", help="makes traffic repeatable")
    add("--log-level", default="info", help="debug, info, warning or error (logs go to stderr)")

    traffic = parser.add_argument_group("synthetic traffic")
    traffic.add_argument("--no-traffic", action="store_true", help="generate nothing")
    traffic.add_argument("--numbers", metavar="N", help="how many made-up numbers (default 20)")
    traffic.add_argument(
        "--number",
        action="append",
        dest="phone_numbers",
        metavar="E164",
        help="a number to send to instead, repeatable",
    )
    traffic.add_argument(
        "--heavy-numbers",
        metavar="N",
        help="numbers that get --heavy-share of all messages (default 2)",
    )
    traffic.add_argument("--heavy-share", metavar="FRACTION", help="(default 0.5)")
    traffic.add_argument("--send-rate", metavar="PER_SECOND", help="messages/s (default 5)")
    traffic.add_argument("--reply-rate", metavar="PER_SECOND", help="replies/s (default 0.2)")
    traffic.add_argument("--receipt-delay-min", metavar="DURATION", help="(default 500ms)")
    traffic.add_argument("--receipt-delay-max", metavar="DURATION", help="(default 5s)")
    traffic.add_argument("--fail-ratio", metavar="FRACTION", help="failed receipts (default 0.08)")
    traffic.add_argument(
        "--pending-share",
        metavar="FRACTION",
        help="receipts that first show without ReportStatus, from their send until the final "
        "one (default 0)",
    )
    traffic.add_argument(
        "--pending-status",
        metavar="FORM",
        help="how ReportStatus shows before the carrier reported: empty, null or absent "
        "(default empty)",
    )
    traffic.add_argument(
        "--late-share",
        metavar="FRACTION",
        help="receipts that come {:g}-{:g} min after their send (default 0)".format(
            *(seconds / 60 for seconds in LATE_DELAY)
        ),
    )
    traffic.add_argument(
        "--backfill",
        metavar="DURATION",
        help="history generated at start (default 10m, at most 7d)",
    )

    windows = parser.add_argument_group("per-number actions (readings Tencent leaves open)")
    windows.add_argument(
        "--by-number-time",
        default="receive",
        choices=[reading.value for reading in WindowTime],
        help="the time BeginTime/EndTime filter on (default: %(default)s)",
    )
    windows.add_argument(
        "--by-number-order",
        default="asc",
        choices=[order.value for order in WindowOrder],
        help="the order of a window's records (default: %(default)s)",
    )

    receipts = parser.add_argument_group("receipts of messages sent through SendSms")
    receipts.add_argument("--receipt-median", metavar="DURATION", help="median delay (default 5s)")
    receipts.add_argument(
        "--receipt-p95", metavar="DURATION", help="95 %% of receipts within (default 1m)"
    )
    receipts.add_argument(
        "--receipt-late-share", metavar="FRACTION", help="receipts 1-6 h late (default 0.01)"
    )
    receipts.add_argument(
        "--receipt-never-share", metavar="FRACTION", help="receipts that never come (default 0.005)"
    )
    receipts.add_argument(
        "--receipt-scale",
        metavar="FACTOR",
        help="multiplies every delay; below 1 compresses time (default 1)",
    )

    limits = parser.add_argument_group("rate limits and clock")
    limits.add_argument(
        "--rate-limit",
        action="append",
        dest="rate_limits",
        metavar="ACTION=N",
        help="requests per second, repeatable (defaults: Tencent's documented limits)",
    )
    limits.add_argument(
        "--slack",
        default="10ms",
        metavar="DURATION",
        help="the limit's window is 1s minus this (default 10ms)",
    )
    limits.add_argument(
        "--max-skew",
        default="5m",
        metavar="DURATION",
        help="accepted client clock difference (default 5m)",
    )

    readings = parser.add_argument_group("the account and Tencent's undocumented readings")
    readings.add_argument(
        "--statistics-end",
        default="inclusive",
        metavar="READING",
        help="CallbackStatusStatistics' EndTime: inclusive (EndTime >= BeginTime, the end hour "
        "counted; the default) or exclusive (EndTime must be after BeginTime)",
    )
    readings.add_argument(
        "--inactive",
        action="append",
        dest="inactive",
        metavar="ACTION[=CODE]",
        help="an action Tencent has not activated on the account, repeatable; refused with CODE "
        f"(one of {', '.join(NOT_ACTIVATED_CODES)}; default the first)",
    )
    readings.add_argument(
        "--region",
        action="append",
        dest="regions",
        metavar="REGION",
        help=f"a region the API accepts, repeatable (default: {', '.join(SMS_REGIONS)})",
    )

    faults = parser.add_argument_group("faults and push callbacks")
    faults.add_argument(
        "--fault",
        action="append",
        dest="faults",
        metavar="SPEC",
        help="ACTION:KIND=PROBABILITY[@VALUE], repeatable (see below)",
    )
    faults.add_argument("--push-status-url")
    faults.add_argument("--push-reply-url")
    faults.add_argument(
        "--push-interval",
        default="1s",
        metavar="DURATION",
        help="how long receipts are batched (default 1s)",
    )
    faults.add_argument(
        "--push-retry-delay",
        default="1s",
        metavar="DURATION",
        help="between a failed push and its retry (default 1s)",
    )
    options = parser._actions[first_option:]
    parser.set_defaults(**_environment_defaults(options, os.environ))
    parser.epilog = _environment_help(options) + "\n" + FAULTS_HELP + "\n" + CONTROL_HELP


def environment_variable(dest: str) -> str:
    """The variable standing in for a flag (dest ``seed``: ``TCSMS_EMULATOR_SEED``)."""
    return ENVIRONMENT_PREFIX + dest.upper()


def _environment_defaults(
    options: Sequence[argparse.Action], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Each flag's variable, where set, as the flag's default: a flag on the command line wins.

    Not for repeatable flags: argparse would add the command line's values to a default list
    instead of replacing it, so ``_repeated`` reads their variables after parsing.
    """
    defaults: dict[str, Any] = {}
    for option in options:
        value = environ.get(environment_variable(option.dest))
        if value is not None and option.dest not in _REPEATABLE:
            defaults[option.dest] = value
    return defaults


def _environment_help(options: Sequence[argparse.Action]) -> str:
    lines = ["environment (a flag given on the command line wins; repeatable flags: a,b,c):"]
    lines += [
        f"  {environment_variable(option.dest):<38}{option.option_strings[0]}" for option in options
    ]
    return "\n".join(lines) + "\n"


def _repeated(args: argparse.Namespace, dest: str) -> list[str]:
    """A repeatable flag's values: from the command line, else its variable's a,b,c list."""
    given: list[str] | None = getattr(args, dest)
    if given:
        return given
    text = os.environ.get(environment_variable(dest), "")
    return [part.strip() for part in text.split(",") if part.strip()]


def _switch(dest: str, value: bool | str) -> bool:
    """A flag without a value, or its variable: 1/true/yes/on or 0/false/no/off/empty."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise UsageError(f"{environment_variable(dest)} {value!r}: expected 1 or 0 (true or false)")


def _convert(flag: str, text: str, convert: Callable[[str], T]) -> T:
    try:
        return convert(text)
    except ValueError as error:
        raise UsageError(f"{flag} {text!r}: {error}") from None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT, like 127.0.0.1:9000 (port 0 picks a free one)")
    return host, int(port)


def _rate_limit(text: str) -> tuple[str, int]:
    action, sep, rate = text.partition("=")
    if not sep or not rate.isdigit():
        raise ValueError("expected ACTION=N, like PullSmsSendStatus=100")
    return action, int(rate)


def _inactive(text: str) -> tuple[str, str]:
    action, _, code = text.partition("=")
    return action, code or NOT_ACTIVATED_CODES[0]


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
        raise ValueError(_first_error(error, flag=False)) from None


_FLAGS = {
    "host": "--listen",
    "port": "--listen",
    "app_ids": "--app-id",
    "rate_limits": "--rate-limit",
    "phone_numbers": "--number",
    "faults": "--fault",
    "inactive": "--inactive",
    "regions": "--region",
}


def _flag(location: tuple[int | str, ...]) -> str:
    """The flag behind a validation error's location, e.g. ("traffic", "send_rate")."""
    names = [part for part in location if isinstance(part, str)]
    if not names:
        return "value"
    if names[0] == "push":
        return "--push-" + names[-1].replace("_", "-")
    if names[0] == "receipts":
        return "--receipt-" + names[-1].replace("_", "-") if len(names) > 1 else "--receipt-p95"
    return _FLAGS.get(names[-1]) or _FLAGS.get(names[0]) or "--" + names[-1].replace("_", "-")


def _first_error(error: ValidationError, *, flag: bool = True) -> str:
    """One line for the first problem, naming the flag (or the field, inside a flag's value)."""
    first = error.errors()[0]
    where = _flag(first["loc"]) if flag else ".".join(map(str, first["loc"]))
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def _traffic(args: argparse.Namespace) -> dict[str, Any] | None:
    if _switch("no_traffic", args.no_traffic):
        return None
    given: Mapping[str, str | list[str] | None] = {
        "numbers": args.numbers,
        "phone_numbers": _repeated(args, "phone_numbers") or None,
        "heavy_numbers": args.heavy_numbers,
        "heavy_share": args.heavy_share,
        "send_rate": args.send_rate,
        "reply_rate": args.reply_rate,
        "fail_ratio": args.fail_ratio,
        "pending_share": args.pending_share,
        "late_share": args.late_share,
    }
    traffic: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    for key in ("receipt_delay_min", "receipt_delay_max", "backfill"):
        text = getattr(args, key)
        if text is not None:
            traffic[key] = _convert("--" + key.replace("_", "-"), text, parse_duration)
    return traffic


def _receipts(args: argparse.Namespace) -> dict[str, Any]:
    receipts: dict[str, Any] = {}
    for key in ("median", "p95"):
        text = getattr(args, f"receipt_{key}")
        if text is not None:
            receipts[key] = _convert(f"--receipt-{key}", text, parse_duration)
    for key in ("late_share", "never_share", "scale"):
        text = getattr(args, f"receipt_{key}")
        if text is not None:
            receipts[key] = text
    return receipts


def build_options(args: argparse.Namespace) -> EmulatorOptions:
    """The options the flags and environment describe.

    Raises:
        UsageError: a value is malformed or out of range (one line naming the flag).
    """
    host, port = _convert("--listen", args.listen, parse_listen)
    app_ids = _repeated(args, "app_ids") or [DEFAULT_APP_ID]
    fields: dict[str, Any] = {
        "host": host,
        "port": port,
        "secret_id": args.secret_id,
        "secret_key": args.secret_key,
        "app_ids": app_ids,
        "seed": args.seed,
        "traffic": _traffic(args),
        "rate_limits": dict(
            _convert("--rate-limit", text, _rate_limit) for text in _repeated(args, "rate_limits")
        ),
        "slack": _convert("--slack", args.slack, parse_duration),
        "max_skew": _convert("--max-skew", args.max_skew, parse_duration),
        "faults": [_convert("--fault", text, parse_fault) for text in _repeated(args, "faults")],
        **({"regions": regions} if (regions := _repeated(args, "regions")) else {}),
        "statistics_end": args.statistics_end,
        "inactive": dict(_inactive(text) for text in _repeated(args, "inactive")),
        "pending_status": args.pending_status or "empty",
        "by_number_time": args.by_number_time,
        "by_number_order": args.by_number_order,
        "receipts": _receipts(args),
        "push": {
            "status_url": args.push_status_url,
            "reply_url": args.push_reply_url,
            "interval": _convert("--push-interval", args.push_interval, parse_duration),
            "retry_delay": _convert("--push-retry-delay", args.push_retry_delay, parse_duration),
        },
    }
    try:
        return EmulatorOptions.model_validate(fields)
    except ValidationError as error:
        raise UsageError(_first_error(error)) from None


async def serve_until_signalled(options: EmulatorOptions) -> None:
    """Serve until SIGTERM or SIGINT; announce the address on stdout first."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with run_emulator(options) as emulator:
            print(f"emulator listening on {emulator.url}", flush=True)
            log.info("emulator.started", url=emulator.url, seed=emulator.state.seed)
            async for signum in signals:
                log.info("emulator.stopping", signal=signal.Signals(signum).name)
                break


def execute(args: argparse.Namespace) -> int:
    options = build_options(args)
    try:
        configure_logging(level=args.log_level, secrets=[options.secret_key], stream=sys.stderr)
    except ValueError as error:
        raise UsageError(f"--log-level: {error}") from None
    try:
        anyio.run(serve_until_signalled, options, backend="asyncio")
    except OSError as error:
        print(
            f"tcsms-poller: emulator cannot listen on {options.host}:{options.port}: "
            f"{error.strerror or error}",
            file=sys.stderr,
        )
        return EX_FAILURE
    return EX_OK
