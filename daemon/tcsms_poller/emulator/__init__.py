"""The emulator: a faithful fake of the Tencent SMS API for tests, the demo and benchmarks.

It authenticates like Tencent (TC3-HMAC-SHA256), answers the six actions the daemon uses with
their documented checks and shapes, enforces strict per-action rate limits, generates traffic,
injects faults and pushes callbacks. The official SDK is its judge in the tests.

    async with run_emulator(EmulatorOptions(seed=1)) as emulator:
        ... point a client at emulator.url ...
"""

from __future__ import annotations

from tcsms_poller.emulator.options import (
    DEFAULT_APP_ID,
    DEFAULT_RATE_LIMITS,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    NOT_ACTIVATED_CODES,
    SMS_REGIONS,
    EmulatorOptions,
    Fault,
    FaultKind,
    PushOptions,
    StatisticsEnd,
    TrafficOptions,
    WindowOrder,
    WindowTime,
)
from tcsms_poller.emulator.server import RunningEmulator, run_emulator

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_RATE_LIMITS",
    "DEFAULT_SECRET_ID",
    "DEFAULT_SECRET_KEY",
    "NOT_ACTIVATED_CODES",
    "SMS_REGIONS",
    "EmulatorOptions",
    "Fault",
    "FaultKind",
    "PushOptions",
    "RunningEmulator",
    "StatisticsEnd",
    "TrafficOptions",
    "WindowOrder",
    "WindowTime",
    "run_emulator",
]
