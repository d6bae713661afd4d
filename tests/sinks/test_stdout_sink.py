"""The stdout sink in a real child process: JSON Lines for pipes, short lines when asked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tcsms_poller.records import OutboxRecord
from tcsms_poller.sinks.stdout import render_pretty

RECORD = {
    "kind": "send_status",
    "id": "2019:-1",
    "app_id": "1400006666",
    "source": "PullSmsSendStatus",
    "received_at": "2026-11-25T08:00:01.000Z",
    "serial_no": "2019:-1",
    "phone_number": "+8613711112222",
    "report_status": "SUCCESS",
    "description": "DELIVRD",
}

CHILD = """
import json, sys, anyio
from tcsms_poller.sinks.base import OutboxRecord, SinkContext
from tcsms_poller.sinks.stdout import StdoutSettings, StdoutSink
from pathlib import Path

async def main() -> None:
    sink = StdoutSink(StdoutSettings(format=sys.argv[1]), SinkContext("stdout", Path(".")))
    await sink.open()
    data = json.dumps(json.loads(sys.argv[2]), separators=(",", ":")).encode()
    await sink.send([OutboxRecord(1, data), OutboxRecord(2, data)])
    await sink.aclose()

anyio.run(main)
"""


@pytest.mark.parametrize("fmt", ["json", "auto"])
def test_records_are_json_lines_on_a_pipe(fmt: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, fmt, json.dumps(RECORD)],
        capture_output=True,
        check=True,
    )
    lines = result.stdout.decode().splitlines()
    assert [json.loads(line) for line in lines] == [RECORD, RECORD]


def test_pretty_lines_show_the_telling_fields() -> None:
    line = render_pretty(OutboxRecord(1, json.dumps(RECORD).encode())).decode()
    assert line == (
        "08:00:01  send_status         1400006666  +8613711112222  SUCCESS  DELIVRD  2019:-1\n"
    )
