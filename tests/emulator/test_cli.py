"""``tcsms-poller emulator``: the announcement line, a real server, SIGTERM, one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tcsms_poller.cli import build_parser
from tcsms_poller.emulator import (
    DEFAULT_RATE_LIMITS,
    NOT_ACTIVATED_CODES,
    SMS_REGIONS,
    EmulatorOptions,
    Fault,
    FaultKind,
    PushOptions,
    StatisticsEnd,
    TrafficOptions,
)
from tcsms_poller.emulator.cli import OPTIONS, build_options, environment_variable, parse_listen
from tcsms_poller.emulator.options import Flag, ReceiptDelays, parse_fault
from tcsms_poller.exits import UsageError

COMMAND = [sys.executable, "-m", "tcsms_poller", "emulator"]


@pytest.mark.anyio
async def test_the_command_announces_its_address_serves_and_stops_on_sigterm() -> None:
    """The first stdout line names a working URL; SIGTERM ends it with exit code 0."""
    args = ["--listen", "127.0.0.1:0", "--seed", "3", "--backfill", "1m", "--send-rate", "2"]
    async with await anyio.open_process([*COMMAND, *args], stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 200)
        prefix = b"emulator listening on http://127.0.0.1:"
        assert line.startswith(prefix)
        url = line.decode().removeprefix("emulator listening on ")
        async with httpx.AsyncClient() as http:
            truth = (await http.get(f"{url}/_emulator/truth")).json()
        assert truth["seed"] == 3
        assert truth["send_statuses"]  # a minute of history at 2 messages per second
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await process.wait() == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--listen", "localhost"], "--listen 'localhost': expected HOST:PORT"),
        (["--seed", "x"], "--seed:"),
        (["--send-rate", "-1"], "--send-rate:"),
        (["--rate-limit", "DescribeSmsSignList=5"], "--rate-limit:"),
        (["--fault", "*:explode=1"], "--fault '*:explode=1':"),
        (["--slack", "10"], "--slack '10': invalid duration"),
        (["--app-id", "my-app"], "--app-id:"),
        (["--push-status-url", "ftp://x"], "--push-status-url:"),
        (["--statistics-end", "both"], "--statistics-end:"),
        (["--inactive", "DescribeSmsSignList"], "--inactive:"),
        (["--inactive", "PullSmsSendStatus=Nope"], "--inactive:"),
        (["--pending-share", "1.5"], "--pending-share:"),
        (["--pending-status", "later"], "--pending-status:"),
        (["--late-share", "1.5"], "--late-share:"),
        (["--receipt-median", "5"], "--receipt-median '5': invalid duration"),
        (["--receipt-median", "2m", "--receipt-p95", "1m"], "--receipt-p95: p95 must not be"),
        (["--receipt-never-share", "2"], "--receipt-never-share:"),
        (["--receipt-scale", "0"], "--receipt-scale:"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_code_2(flags: list[str], message: str) -> None:
    """Each bad value is refused before anything starts, naming the flag, without a traceback."""
    result = subprocess.run([*COMMAND, *flags], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tcsms-poller: " + message)


def _options(*flags: str) -> object:
    return build_options(build_parser("emulator").parse_args(["emulator", *flags]))


def test_flags_become_options() -> None:
    """Listen address, apps, limits, traffic, faults and pushes reach the options."""
    options = build_options(
        build_parser("emulator").parse_args(
            [
                "emulator",
                "--listen",
                "[::1]:0",
                "--app-id",
                "1400000001",
                "--app-id",
                "1400000002",
                "--rate-limit",
                "PullSmsSendStatus=7",
                "--slack",
                "5ms",
                "--send-rate",
                "9.5",
                "--backfill",
                "2h",
                "--pending-share",
                "0.3",
                "--pending-status",
                "absent",
                "--fault",
                "PullSmsSendStatus:http_error=0.25@502",
                "--push-status-url",
                "http://127.0.0.1:1/status",
                "--by-number-time",
                "send",
                "--by-number-order",
                "desc",
                "--late-share",
                "0.2",
            ]
        )
    )
    assert (options.host, options.port) == ("::1", 0)
    assert options.app_ids == ("1400000001", "1400000002")
    assert options.rate_limits == {**DEFAULT_RATE_LIMITS, "PullSmsSendStatus": 7}
    assert options.slack == pytest.approx(0.005)
    assert options.traffic is not None
    assert options.traffic.send_rate == 9.5
    assert options.traffic.backfill == 7200
    assert options.traffic.pending_share == 0.3
    assert options.pending_status == "absent"
    assert options.faults == (
        Fault(action="PullSmsSendStatus", kind=FaultKind.HTTP_ERROR, probability=0.25, status=502),
    )
    assert options.push.status_url == "http://127.0.0.1:1/status"
    assert (options.by_number_time, options.by_number_order) == ("send", "desc")
    assert options.traffic.late_share == 0.2


def test_readings_activation_and_regions_become_options() -> None:
    """--statistics-end, --inactive (with or without a code) and --region reach the options."""
    options = build_options(
        build_parser("emulator").parse_args(
            [
                "emulator",
                "--statistics-end",
                "exclusive",
                "--inactive",
                "PullSmsReplyStatus",
                "--inactive",
                "PullSmsSendStatus=UnsupportedOperation",
                "--region",
                "ap-singapore",
            ]
        )
    )
    assert options.statistics_end is StatisticsEnd.EXCLUSIVE
    assert options.inactive == {
        "PullSmsReplyStatus": NOT_ACTIVATED_CODES[0],
        "PullSmsSendStatus": "UnsupportedOperation",
    }
    assert options.regions == ("ap-singapore",)
    defaults = build_options(build_parser("emulator").parse_args(["emulator"]))
    assert defaults.statistics_end is StatisticsEnd.INCLUSIVE
    assert (defaults.inactive, defaults.regions) == ({}, SMS_REGIONS)


def test_no_traffic_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-traffic turns generation off; TCSMS_EMULATOR_* fill in what flags do not give."""
    monkeypatch.setenv("TCSMS_EMULATOR_APP_IDS", "1400000001, 1400000002")
    monkeypatch.setenv("TCSMS_EMULATOR_SECRET_KEY", "from-env")
    monkeypatch.setenv("TCSMS_EMULATOR_SEED", "42")
    options = build_options(build_parser("emulator").parse_args(["emulator", "--no-traffic"]))
    assert options.traffic is None
    assert options.app_ids == ("1400000001", "1400000002")
    assert options.secret_key == "from-env"
    assert options.seed == 42


def emulator_options(*argv: str) -> EmulatorOptions:
    return build_options(build_parser("emulator").parse_args(["emulator", *argv]))


def test_every_flag_has_a_variable_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Single and repeatable flags, a switch: each from its variable unless given as a flag."""
    environment = {
        "SLACK": "25ms",
        "SEND_RATE": "7",
        "PHONE_NUMBERS": "+8613711112222,+8613711113333",
        "RATE_LIMITS": "PullSmsSendStatus=3, PullSmsReplyStatus=4",
        "FAULTS": "*:latency=0.5@20ms",
        "PUSH_INTERVAL": "3s",
        "BY_NUMBER_TIME": "send",
    }
    for name, value in environment.items():
        monkeypatch.setenv(environment_variable(name.lower()), value)
    from_environment = emulator_options()
    assert from_environment.slack == 0.025
    assert from_environment.traffic is not None
    assert from_environment.traffic.send_rate == 7
    assert from_environment.traffic.phone_numbers == ("+8613711112222", "+8613711113333")
    assert from_environment.rate_limits["PullSmsSendStatus"] == 3
    assert from_environment.rate_limits["PullSmsReplyStatus"] == 4
    assert from_environment.faults == (
        Fault(kind=FaultKind.LATENCY, probability=0.5, seconds=0.02),
    )
    assert from_environment.push.interval == 3
    assert from_environment.by_number_time == "send"

    flags = emulator_options(
        "--slack", "5ms", "--number", "+8613799990000", "--rate-limit", "PullSmsSendStatus=9"
    )
    assert flags.slack == 0.005
    assert flags.traffic is not None
    assert flags.traffic.phone_numbers == ("+8613799990000",)  # not added to the variable's
    assert flags.rate_limits["PullSmsSendStatus"] == 9
    assert flags.rate_limits["PullSmsReplyStatus"] == DEFAULT_RATE_LIMITS["PullSmsReplyStatus"]

    monkeypatch.setenv(environment_variable("by_number_order"), "sideways")
    with pytest.raises(UsageError, match=r"^--by-number-order: "):
        emulator_options()
    monkeypatch.delenv(environment_variable("by_number_order"))

    monkeypatch.setenv("TCSMS_EMULATOR_NO_TRAFFIC", "yes")
    assert emulator_options().traffic is None
    monkeypatch.setenv("TCSMS_EMULATOR_NO_TRAFFIC", "maybe")
    with pytest.raises(UsageError, match=r"^TCSMS_EMULATOR_NO_TRAFFIC 'maybe': expected 1 or 0"):
        emulator_options()


def test_the_help_names_the_variable_of_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("emulator").parse_args(["emulator", "--help"])
    help_text = capsys.readouterr().out
    flags = {word for word in help_text.split() if word.startswith("--")} - {"--help"}
    listed = {
        line.split()[1]
        for line in help_text.splitlines()
        if line.strip().startswith("TCSMS_EMULATOR_")
    }
    assert len(flags) > 20
    assert listed == flags
    assert "TCSMS_EMULATOR_PUSH_RETRY_DELAY       --push-retry-delay" in help_text


def test_fault_specs() -> None:
    """ACTION:KIND=PROBABILITY[@VALUE], the value meaning what the kind needs."""
    assert parse_fault("*:latency=0.1@300ms") == Fault(
        kind=FaultKind.LATENCY, probability=0.1, seconds=0.3
    )
    assert parse_fault("ReportConversion:internal_error=1@InternalError.Timeout") == Fault(
        action="ReportConversion", kind=FaultKind.INTERNAL_ERROR, code="InternalError.Timeout"
    )
    assert parse_fault("*:truncated=0.5").kind is FaultKind.TRUNCATED
    for bad in ("latency=1", "*:latency", "*:latency=x", "*:http_error=1@404"):
        with pytest.raises(ValueError, match=r"."):
            parse_fault(bad)


def test_listen_addresses() -> None:
    """HOST:PORT with IPv6 in brackets; the port is required."""
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)  # noqa: S104 -- parsing only
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9000", ":9000", "host:", "host:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def test_a_usage_error_is_raised_not_printed() -> None:
    """build_options raises UsageError for the CLI to print (exit 2)."""
    with pytest.raises(UsageError, match="--numbers"):
        _options("--numbers", "0")


def test_receipt_delays_come_from_flags_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """SendSms's receipt delays: each flag, or its TCSMS_EMULATOR_* variable."""
    assert emulator_options().receipts == EmulatorOptions().receipts
    monkeypatch.setenv(environment_variable("receipt_never_share"), "0.25")
    options = emulator_options(
        *("--receipt-median", "2s", "--receipt-p95", "30s", "--receipt-late-share", "0.1"),
        *("--receipt-scale", "0.5"),
    )
    delays = options.receipts
    assert (delays.median, delays.p95, delays.late_share) == (2.0, 30.0, 0.1)
    assert (delays.never_share, delays.scale) == (0.25, 0.5)


def test_every_option_field_is_a_flag_unless_marked_otherwise() -> None:
    """A new field of the options is a new flag (and variable) without touching the CLI."""
    paths = {option.path for option in OPTIONS}
    models = (
        (EmulatorOptions, ()),
        (TrafficOptions, ("traffic",)),
        (PushOptions, ("push",)),
        (ReceiptDelays, ("receipts",)),
    )
    for model, prefix in models:
        for name, field in model.model_fields.items():
            hidden = any(isinstance(item, Flag) and item.hidden for item in field.metadata)
            nested = model is EmulatorOptions and name in ("traffic", "push", "receipts")
            assert ((*prefix, name) in paths) is not (hidden or nested), name
