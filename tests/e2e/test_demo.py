"""The README's first command: the demo runs with no configuration and tells the truth about it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter

import jsonschema

from tcsms_poller.records import record_schema

DEMO = [sys.executable, "-m", "tcsms_poller", "demo"]


def test_demo_delivers_records_once_within_the_rate_limits() -> None:
    """Every collected record is on stdout once; the summary's counts are the real ones; OK."""
    result = subprocess.run(
        [*DEMO, "--duration", "4"], capture_output=True, text=True, timeout=120, check=False
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
    summary = result.stderr[result.stderr.index("demo summary") :]
    assert " 0 rate-limit errors" in summary
    assert (
        f"collected: {kinds['send_status']} send_status, {kinds['reply']} reply, "
        f"{kinds['callback_statistics']} callback_statistics"
    ) in summary
    assert f"sink stdout: {len(records)} of {len(records)} collected records delivered" in summary
    # What the emulator holds and the daemon did not collect is accounted for, never "missing".
    receipts = re.search(r"holds: (\d+) receipts, (\d+) collected", summary)
    assert receipts is not None
    assert int(receipts[2]) == kinds["send_status"]
    assert "NOT" not in summary
    assert (
        summary.rstrip().splitlines()[-1]
        == f"OK: all {len(records)} collected records delivered to every sink"
    )


def test_a_closed_stdout_ends_the_demo_promptly_and_fails() -> None:
    """``demo | head -2``: the demo stops at once, says what was not delivered, and exits 1."""
    started = time.monotonic()
    with subprocess.Popen(
        [*DEMO, "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        for _ in range(2):
            json.loads(process.stdout.readline())
        process.stdout.close()
        stderr = process.stderr.read().decode()
        returncode = process.wait(timeout=60)
    elapsed = time.monotonic() - started
    assert returncode == 1, stderr[-3000:]
    assert elapsed < 30  # the demo was to run 60 s; retries and a drain used to take 20 s more
    assert "Traceback" not in stderr
    assert "Exception" not in stderr
    summary = stderr[stderr.index("demo summary") :]
    last = summary.rstrip().splitlines()[-1]
    assert last.startswith("FAIL: stdout was closed before the end; sink stdout dead-lettered")
    delivered = re.search(
        r"sink stdout: (\d+) of (\d+) collected records delivered, (\d+)", summary
    )
    assert delivered is not None
    assert int(delivered[1]) + int(delivered[3]) == int(delivered[2])
