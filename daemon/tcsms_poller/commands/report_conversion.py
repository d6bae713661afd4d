"""``tcsms-poller report-conversion -c FILE --serial-no S [--time UNIX]``: report one, now.

For an operator checking a single conversion by hand; the daemon's reporter handles the queued
ones (``POST /v1/conversions``). Prints Tencent's answer as JSON; exits 0 when it is ``ok``.
"""

from __future__ import annotations

import argparse
import json

import anyio
import structlog

from tcsms_poller.commands._common import add_config_argument, load_and_configure
from tcsms_poller.daemon import build_client
from tcsms_poller.exits import EX_FAILURE, EX_OK, UsageError
from tcsms_poller.metrics import Metrics
from tcsms_poller.tencent.errors import TencentError
from tcsms_poller.tencent.models import ConversionStatus

__all__ = ["add_arguments", "execute"]

log = structlog.get_logger("tcsms_poller.commands")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, logs=True)
    parser.add_argument("--serial-no", required=True, help="the SerialNo of the sent message")
    parser.add_argument("--time", type=int, metavar="UNIX", help="conversion time (default now)")
    parser.add_argument("--app-id", help="SdkAppId (default: the first configured app)")


def execute(args: argparse.Namespace) -> int:
    config = load_and_configure(args, prints_result=True)
    app_ids = [app.sms_sdk_app_id for app in config.apps]
    app_id = args.app_id or app_ids[0]
    if app_id not in app_ids:
        raise UsageError(f"--app-id {app_id} is not configured (configured: {', '.join(app_ids)})")
    if args.time is not None and args.time < 0:
        raise UsageError("--time must be a UNIX time in seconds")

    async def report() -> ConversionStatus:
        async with build_client(config, Metrics()) as client:
            return await client.report_conversion(app_id, args.serial_no, conversion_time=args.time)

    try:
        status = anyio.run(report, backend="asyncio")
    except TencentError as error:
        log.error("conversion.failed", code=error.code, request_id=error.request_id or None)
        status = ConversionStatus(code=error.code, message=error.message)
    print(json.dumps({"serial_no": args.serial_no, "code": status.code, "message": status.message}))
    return EX_OK if status.is_ok else EX_FAILURE
