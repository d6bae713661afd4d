"""The README's first command: the demo runs with no configuration and delivers real records."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import jsonschema

from tcsms_poller.records import record_schema


def test_demo_delivers_records_once_within_the_rate_limits() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tcsms_poller", "demo", "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    validator = jsonschema.Draft202012Validator(record_schema())
    for record in records:
        validator.validate(record)
    kinds = Counter(record["kind"] for record in records)
    assert kinds["send_status"] > 100  # the emulator's backfill, some numbers paged
    assert kinds["reply"] > 0
    assert len({record["id"] for record in records}) == len(records)
    assert "demo summary" in result.stderr
    assert " 0 rate-limit errors" in result.stderr
    assert f"send_status          {kinds['send_status']}" in result.stderr
