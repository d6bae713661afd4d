"""``tcsms-poller report-conversion -c FILE --serial-no S [--conversion-time UNIX]``: one, now.

For an operator checking a single conversion by hand; the daemon's reporter handles the queued
ones (``POST /v1/conversions``). Prints Tencent's answer as JSON; exits 0 when it is ``ok``.
The outcome is committed as the same ``conversion`` record the reporter commits (ok, or a
permanent answer about the conversion), so the sinks' audit trail does not depend on how a
conversion was reported; a transient or account-level failure records nothing, as there.
"""

from __future__ import annotations

import argparse
import json
import time

import anyio
import structlog

from tcsms_poller.commands._common import add_config_argument, load_and_configure
from tcsms_poller.config import Config
from tcsms_poller.daemon import build_client
from tcsms_poller.exits import EX_FAILURE, EX_OK, UsageError
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.numbers_ascii import MAX_UNIX_TIME, parse_ascii_int
from tcsms_poller.records import conversion_record, format_received_at
from tcsms_poller.state import StateError, open_state
from tcsms_poller.tencent.errors import AuthError, PermanentError, TencentError
from tcsms_poller.tencent.models import ConversionStatus
from tcsms_poller.workers.conversions import ACTION

__all__ = ["add_arguments", "execute"]

log = structlog.get_logger("tcsms_poller.commands")


def _unix_time(text: str) -> int:
    value = parse_ascii_int(text, maximum=MAX_UNIX_TIME)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UNIX time in seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, logs=True)
    parser.add_argument("--serial-no", required=True, help="the SerialNo of the sent message")
    parser.add_argument(
        "--conversion-time",
        type=_unix_time,
        metavar="UNIX",
        help="conversion time, as conversion_time in POST /v1/conversions (default now)",
    )
    parser.add_argument("--app-id", help="SdkAppId (default: the first configured app)")


async def _report(
    config: Config, app_id: str, serial_no: str, conversion_time: int | None
) -> ConversionStatus:
    """Report, then commit the outcome's record where the reporter would have."""
    metrics = Metrics()
    store = await open_state(config.state)
    try:
        async with build_client(config, metrics) as client:
            try:
                status = await client.report_conversion(
                    app_id, serial_no, conversion_time=conversion_time
                )
            except AuthError:
                raise
            except PermanentError as error:
                status = ConversionStatus(code=error.code, message=error.message)
        record = conversion_record(
            app_id,
            serial_no=serial_no,
            conversion_time=conversion_time,
            code=status.code,
            message=status.message,
            received_at=format_received_at(time.time()),
        )
        await Intake(store, metrics).commit([record], source=ACTION)
    finally:
        await store.aclose()
    return status


def execute(args: argparse.Namespace) -> int:
    config = load_and_configure(args, prints_result=True)
    app_ids = [app.sms_sdk_app_id for app in config.apps]
    app_id = args.app_id or app_ids[0]
    if app_id not in app_ids:
        raise UsageError(f"--app-id {app_id} is not configured (configured: {', '.join(app_ids)})")
    try:
        status = anyio.run(
            _report, config, app_id, args.serial_no, args.conversion_time, backend="asyncio"
        )
    except TencentError as error:
        log.error("conversion.failed", **error.log_fields)
        status = ConversionStatus(code=error.code, message=error.message)
    except StateError as error:
        log.error("conversion.not_recorded", error=str(error))
        return EX_FAILURE
    print(json.dumps({"serial_no": args.serial_no, "code": status.code, "message": status.message}))
    return EX_OK if status.is_ok else EX_FAILURE
