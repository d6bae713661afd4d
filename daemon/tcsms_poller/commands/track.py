"""``tcsms-poller track -c FILE --serial-no S --phone N [--sent-at T]``, or JSON Lines on stdin.

Tracks sent messages until their receipt, as ``POST /v1/messages`` does, by writing the state
database beside a running daemon (which picks them up at its next round) or before it starts.
Each line on stdin is one message, ``{"serial_no": …, "phone_number": …, "sent_at": …}``
(``sent_at`` and ``app_id`` optional). Any bad line is reported as ``stdin:LINE: …`` and
nothing is tracked. Prints one JSON line per message: its SerialNo and whether it was new.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable

from pydantic import ValidationError

from tcsms_poller.commands._common import add_config_argument, load_and_configure, run_reporting
from tcsms_poller.config import Config
from tcsms_poller.exits import EX_OK, UsageError
from tcsms_poller.numbers_ascii import shorten
from tcsms_poller.server.messages import FUTURE_SKEW, MAX_MESSAGES, MessageRequest
from tcsms_poller.state import open_state
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import NewMessage
from tcsms_poller.workers.tracking import schedule_of

__all__ = ["add_arguments", "execute"]

MAX_LINES = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, logs=True)
    parser.add_argument("--serial-no", help="the SerialNo SendSms returned (else: stdin)")
    parser.add_argument("--phone", help="the number it was sent to, E.164")
    parser.add_argument("--sent-at", metavar="UNIX", help="when it was sent (default now)")
    parser.add_argument("--app-id", help="SdkAppId (default: the first configured app)")


def _problem(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_context=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "line"
    return f"{field}: {shorten(first['msg'].removeprefix('Value error, '), 200)}"


def _from_arguments(args: argparse.Namespace) -> list[MessageRequest]:
    if args.phone is None:
        raise UsageError("--serial-no needs --phone")
    given = {"serial_no": args.serial_no, "phone_number": args.phone, "app_id": args.app_id}
    if args.sent_at is not None:
        given["sent_at"] = args.sent_at
    try:
        return [MessageRequest.model_validate(given)]
    except ValidationError as error:
        raise UsageError(_problem(error).replace("phone_number", "--phone", 1)) from None


def _from_lines(lines: Iterable[str]) -> list[MessageRequest]:
    messages: list[MessageRequest] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(messages) == MAX_LINES:
            raise UsageError(f"stdin: more than {MAX_LINES} messages; split the file")
        try:
            messages.append(MessageRequest.model_validate_json(line))
        except ValidationError as error:
            raise UsageError(f"stdin:{number}: {_problem(error)}") from None
    if not messages:
        raise UsageError("stdin: no message (give --serial-no and --phone, or JSON Lines)")
    return messages


def _resolve(
    config: Config, requests: list[MessageRequest], default_app: str | None
) -> dict[str, list[NewMessage]]:
    apps = {app.sms_sdk_app_id: app for app in config.apps}
    now = int(time.time())
    by_app: dict[str, list[NewMessage]] = {}
    for request in requests:
        app_id = request.app_id or default_app or config.apps[0].sms_sdk_app_id
        if app_id not in apps:
            raise UsageError(f"app_id {shorten(app_id, 40)!r} is not configured")
        if not apps[app_id].tracking.enabled:
            raise UsageError(f"tracking is disabled for app {app_id}")
        sent_at = now if request.sent_at is None else request.sent_at
        if sent_at > now + FUTURE_SKEW:
            raise UsageError(f"{request.serial_no}: sent_at is in the future")
        by_app.setdefault(app_id, []).append(
            NewMessage(app_id, request.serial_no, request.phone_number, sent_at)
        )
    return by_app


async def _track(config: Config, by_app: dict[str, list[NewMessage]]) -> list[tuple[str, bool]]:
    store = await open_state(config.state)
    answers: list[tuple[str, bool]] = []
    try:
        messages = tracked_messages(store)
        for app_id, items in by_app.items():
            for start in range(0, len(items), MAX_MESSAGES):
                batch = items[start : start + MAX_MESSAGES]
                app = next(a for a in config.apps if a.sms_sdk_app_id == app_id)
                created = await messages.track(batch, schedule=schedule_of(app.tracking))
                answers += [(m.serial_no, flag) for m, flag in zip(batch, created, strict=True)]
    finally:
        await store.aclose()
    return answers


def execute(args: argparse.Namespace) -> int:
    if args.serial_no is None and (args.phone or args.sent_at):
        raise UsageError("--phone and --sent-at need --serial-no")
    requests = _from_arguments(args) if args.serial_no is not None else _from_lines(sys.stdin)
    config = load_and_configure(args, prints_result=True)
    by_app = _resolve(config, requests, args.app_id)
    answers = run_reporting(lambda: _track(config, by_app), event="track.failed")
    for serial_no, created in answers:
        print(json.dumps({"serial_no": serial_no, "created": created}))
    return EX_OK
