"""``tcsms-poller report-conversion``: one conversion reported now, its answer printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from tcsms_poller.emulator import RunningEmulator
from tcsms_poller.records import conversion_record
from tests.support.daemon_process import APP, daemon_config
from tests.support.emulator import inject, receipts, truth

pytestmark = pytest.mark.anyio


async def report(tmp_path: Path, emulator: RunningEmulator, *args: str) -> tuple[int, str, str]:
    """Run the command against ``emulator``: exit code, stdout, stderr."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(daemon_config(emulator.url, tmp_path)))
    command = [sys.executable, "-m", "tcsms_poller", "report-conversion", "-c", str(config)]
    with anyio.fail_after(60):
        done = await anyio.run_process([*command, *args], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_a_known_serial_no_is_reported_and_printed(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Exit 0, Tencent's answer as one JSON line, and the emulator has the conversion."""
    await inject(emulator, send_statuses=receipts(1))
    serial_no = (await truth(emulator))["send_statuses"][0]["serial_no"]
    code, out, _ = await report(
        tmp_path, emulator, "--serial-no", serial_no, "--conversion-time", "1764000000"
    )
    assert code == 0
    assert json.loads(out) == {"serial_no": serial_no, "code": "ok", "message": "report success"}
    [conversion] = (await truth(emulator))["conversions"]
    assert (conversion["serial_no"], conversion["conversion_time"]) == (serial_no, 1764000000)


async def once(tmp_path: Path) -> None:
    """``once`` with the configuration ``report`` wrote: the file sink gets the outbox."""
    command = [sys.executable, "-m", "tcsms_poller", "once", "-c", str(tmp_path / "config.yaml")]
    with anyio.fail_after(60):
        await anyio.run_process(command, check=True)


def conversions_delivered(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    return [record for line in lines if (record := json.loads(line))["kind"] == "conversion"]


@pytest.mark.parametrize("known", [True, False], ids=["ok", "refused"])
async def test_a_reported_conversion_reaches_the_sinks_as_the_reporters_record(
    tmp_path: Path, emulator: RunningEmulator, known: bool
) -> None:
    """The CLI commits the ``conversion`` record the reporter would: same id, source, fields."""
    await inject(emulator, send_statuses=receipts(1))
    serial_no = (await truth(emulator))["send_statuses"][0]["serial_no"] if known else "5000:x"
    await report(tmp_path, emulator, "--serial-no", "5000:warm-up")  # makes the config file
    await once(tmp_path)  # the file sink's cursor starts at the head: create it first
    code, out, _ = await report(
        tmp_path, emulator, "--serial-no", serial_no, "--conversion-time", "1764000000"
    )
    assert code == (0 if known else 1)
    answer = json.loads(out)
    await once(tmp_path)
    [record] = [r for r in conversions_delivered(tmp_path) if r["serial_no"] == serial_no]
    expected = conversion_record(
        APP,
        serial_no=serial_no,
        conversion_time=1764000000,
        code=answer["code"],
        message=answer["message"],
        received_at=record["received_at"],
    )
    assert record == json.loads(expected.to_json())
    assert record["code"] == ("ok" if known else "InvalidParameterValue")


async def test_a_refused_conversion_prints_the_code_and_exits_1(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """An unknown SerialNo: the error code on stdout, exit 1, nothing recorded."""
    code, out, _ = await report(tmp_path, emulator, "--serial-no", "5000:unknown")
    assert code == 1
    assert json.loads(out)["code"] == "InvalidParameterValue"
    assert (await truth(emulator))["conversions"] == []


async def test_an_unconfigured_app_is_a_usage_error(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Exit 2 with one line naming the app, no request sent."""
    code, out, err = await report(tmp_path, emulator, "--serial-no", "x", "--app-id", "1400000001")
    assert code == 2
    assert "1400000001 is not configured" in out + err
    assert "Traceback" not in out + err
    assert emulator.state.stats_snapshot()["actions"].get("ReportConversion") is None
