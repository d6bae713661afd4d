"""The emulator's command line, derived from its options model.

Every field of ``EmulatorOptions`` (and of ``TrafficOptions``, ``PushOptions`` and
``ReceiptDelays`` inside it) is a flag and a ``TCSMS_EMULATOR_*`` variable unless its ``Flag``
marker says otherwise (``options.py`` states the rule), so a new option is one field. Values are
checked here rather than by argparse,
so that a bad one is a single line naming the flag. A few flags are the command's own and map to
no single field: ``--listen`` (host and port), ``--no-traffic`` and ``--log-level``.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tcsms_poller.emulator.options import (
    FAULTS_GROUP,
    RECEIPTS_GROUP,
    TRAFFIC_GROUP,
    EmulatorOptions,
    Flag,
    PushOptions,
    ReceiptDelays,
    TrafficOptions,
)
from tcsms_poller.emulator_account import (
    DEFAULT_APP_ID,
    DEFAULT_LISTEN,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
)
from tcsms_poller.exits import UsageError
from tcsms_poller.units import format_duration, parse_duration

__all__ = [
    "ENVIRONMENT_PREFIX",
    "add_arguments",
    "build_options",
    "environment_variable",
    "parse_listen",
]

T = TypeVar("T")
ENVIRONMENT_PREFIX = "TCSMS_EMULATOR_"

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
    endpoint: http://{DEFAULT_LISTEN}
  apps: [{{sms_sdk_app_id: "{DEFAULT_APP_ID}"}}]

control routes (JSON, no authentication; what tests and benchmarks use):
  GET  /_emulator/stats     requests, rate-limit hits, errors and faults per action; pushes
  GET  /_emulator/truth     every record created, and when a queue pull handed it out
  POST /_emulator/records   inject exact records: {{"send_statuses": [...], "replies": [...]}}
  GET  /_emulator/faults    the fault rules in force
  POST /_emulator/faults    replace them: {{"faults": [...]}}
"""

# Where each model's fields sit: the options path, the flag prefix, the default --help section.
_MODELS: tuple[tuple[type[BaseModel], tuple[str, ...], str, str], ...] = (
    (EmulatorOptions, (), "", ""),
    (TrafficOptions, ("traffic",), "", TRAFFIC_GROUP),
    (PushOptions, ("push",), "push_", FAULTS_GROUP),
    (ReceiptDelays, ("receipts",), "receipt_", RECEIPTS_GROUP),
)
_GROUPS = (
    TRAFFIC_GROUP,
    "per-number actions (readings Tencent leaves open)",
    "rate limits and clock",
    RECEIPTS_GROUP,
    "the account and Tencent's undocumented readings",
    FAULTS_GROUP,
)


@dataclass(frozen=True, slots=True)
class _Option:
    """One flag derived from a field."""

    path: tuple[str, ...]  # where the value goes in the options: ("traffic", "send_rate")
    dest: str  # the argparse dest, and the variable's suffix: send_rate
    flag: str  # --send-rate
    spec: Flag
    repeatable: bool
    is_mapping: bool
    help: str

    def convert(self, text: str) -> Any:
        """One value (or item) from its text; a malformed one is a ``UsageError``."""
        return _convert(self.flag, text, self.spec.parse) if self.spec.parse else text


def environment_variable(dest: str) -> str:
    """The variable standing in for a flag (dest ``seed``: ``TCSMS_EMULATOR_SEED``)."""
    return ENVIRONMENT_PREFIX + dest.upper()


def _flag_of(field: FieldInfo) -> Flag:
    return next((item for item in field.metadata if isinstance(item, Flag)), Flag())


def _shown(default: Any, spec: Flag) -> str | None:
    if spec.shown_default is not None:
        return spec.shown_default
    if default is None or (isinstance(default, tuple | Mapping) and not default):
        return None
    if spec.parse is parse_duration:
        return format_duration(float(default))
    if isinstance(default, tuple):
        return ", ".join(map(str, default))
    return str(default)


def _options() -> Iterator[_Option]:
    """Every field's flag, model by model, in field order."""
    for model, path, prefix, group in _MODELS:
        for name, field in model.model_fields.items():
            spec = _flag_of(field)
            origin = typing.get_origin(field.annotation)
            if spec.hidden or (
                isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            ):
                continue
            if origin in (typing.Union, types.UnionType) and any(
                isinstance(arg, type) and issubclass(arg, BaseModel)
                for arg in typing.get_args(field.annotation)
            ):
                continue  # a nested model: its fields are flags of their own
            dest = prefix + name
            is_mapping = isinstance(origin, type) and issubclass(origin, Mapping)
            repeatable = is_mapping or origin is tuple
            default = field.get_default(call_default_factory=True)
            help_text = field.description or ""
            if repeatable:
                help_text += ", repeatable"
            shown = _shown(default, spec)
            if shown is not None:
                help_text += f" (default: {shown})"
            yield _Option(
                path=(*path, name),
                dest=dest,
                flag=spec.name or "--" + dest.replace("_", "-"),
                spec=Flag(
                    name=spec.name,
                    metavar=spec.metavar or _choices(field.annotation),
                    group=spec.group or group,
                    parse=spec.parse,
                ),
                repeatable=repeatable,
                is_mapping=is_mapping,
                help=help_text.replace("%", "%%"),
            )


def _choices(annotation: Any) -> str | None:
    """``{a,b}`` for an enum or a literal, as argparse shows choices."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "{" + ",".join(str(member.value) for member in annotation) + "}"
    if typing.get_origin(annotation) is Literal:
        return "{" + ",".join(map(str, typing.get_args(annotation))) + "}"
    return None


OPTIONS: tuple[_Option, ...] = tuple(_options())
_BY_PATH = {option.path: option.flag for option in OPTIONS} | {
    ("host",): "--listen",
    ("port",): "--listen",
    ("receipts",): "--receipt-p95",  # the delays' consistency: p95 against median, and shares
}
_REPEATABLE = frozenset(option.dest for option in OPTIONS if option.repeatable)


# The command's own flags, which map to no single field.
_OWN: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "--listen",
        "",
        {
            "default": DEFAULT_LISTEN,
            "metavar": "HOST:PORT",
            "help": "address to serve on; port 0 picks a free one (default: %(default)s)",
        },
    ),
    (
        "--log-level",
        "",
        {"default": "info", "help": "debug, info, warning or error (logs go to stderr)"},
    ),
    ("--no-traffic", TRAFFIC_GROUP, {"action": "store_true", "help": "generate nothing"}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's flags; values are strings, checked by ``build_options``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    groups = {name: parser.add_argument_group(name) for name in _GROUPS}
    dests, flags = [], []
    for flag, group, keywords in _OWN:
        action = (groups[group] if group else parser).add_argument(flag, **keywords)
        dests.append(action.dest)
        flags.append(flag)
    for option in OPTIONS:
        target = groups[option.spec.group] if option.spec.group else parser
        target.add_argument(
            option.flag,
            dest=option.dest,
            action="append" if option.repeatable else "store",
            metavar=option.spec.metavar,
            help=option.help,
        )
        dests.append(option.dest)
        flags.append(option.flag)
    parser.set_defaults(**_environment_defaults(dests, os.environ))
    parser.epilog = _environment_help(dests, flags) + "\n" + FAULTS_HELP + "\n" + CONTROL_HELP


def _environment_defaults(dests: list[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Each flag's variable, where set, as the flag's default: a flag on the command line wins.

    Not for repeatable flags: argparse would add the command line's values to a default list
    instead of replacing it, so ``_repeated`` reads their variables after parsing.
    """
    defaults: dict[str, Any] = {}
    for dest in dests:
        value = environ.get(environment_variable(dest))
        if value is not None and dest not in _REPEATABLE:
            defaults[dest] = value
    return defaults


def _environment_help(dests: list[str], flags: list[str]) -> str:
    lines = ["environment (a flag given on the command line wins; repeatable flags: a,b,c):"]
    lines += [
        f"  {environment_variable(dest):<38}{flag}" for dest, flag in zip(dests, flags, strict=True)
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


def _flag(location: tuple[int | str, ...]) -> str:
    """The flag behind a validation error's location, e.g. ("traffic", "send_rate")."""
    names = tuple(part for part in location if isinstance(part, str))
    if not names:
        return "value"
    for end in range(len(names), 0, -1):
        if (flag := _BY_PATH.get(names[:end])) is not None:
            return flag
    return "--" + names[-1].replace("_", "-")


def _first_error(error: ValidationError) -> str:
    """One line for the first problem, naming the flag."""
    first = error.errors()[0]
    return f"{_flag(first['loc'])}: {first['msg'].removeprefix('Value error, ')}"


def _value(args: argparse.Namespace, option: _Option) -> Any:
    """The option's value from its flag or variable, or None where neither gives one."""
    if not option.repeatable:
        text: str | None = getattr(args, option.dest)
        return None if text is None else option.convert(text)
    items = [option.convert(text) for text in _repeated(args, option.dest)]
    if option.is_mapping:
        return dict(items)
    return items or None


def build_options(args: argparse.Namespace) -> EmulatorOptions:
    """The options the flags and environment describe.

    Raises:
        UsageError: a value is malformed or out of range (one line naming the flag).
    """
    host, port = _convert("--listen", args.listen, parse_listen)
    fields: dict[str, Any] = {"host": host, "port": port, "traffic": {}, "push": {}, "receipts": {}}
    for option in OPTIONS:
        value = _value(args, option)
        if value is not None:
            *parents, name = option.path
            place = fields
            for parent in parents:
                place = place[parent]
            place[name] = value
    if _switch("no_traffic", args.no_traffic):
        fields["traffic"] = None
    try:
        return EmulatorOptions.model_validate(fields)
    except ValidationError as error:
        raise UsageError(_first_error(error)) from None
