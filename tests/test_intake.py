"""The intake: rejected items, pulled or pushed, are quarantined, counted and logged masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.state.store import SqliteStore
from tcsms_poller.tencent.models import RejectedItem
from tests.support.log_capture import captured_logs, json_lines

pytestmark = pytest.mark.anyio

PULLED = {"SerialNo": "s-1", "PhoneNumber": "+8613711112222", "ReportStatus": "DELIVRD"}
PUSHED = {"sid": "s-2", "mobile": "13711113333", "nationcode": "+86", "report_status": "OK"}


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        (PULLED, "+86137****2222"),
        (PUSHED, "+86137****3333"),
        ({**PUSHED, "mobile": "+8613711114444"}, "+86137****4444"),
        ({"sid": "s-3"}, None),
        ([1, 2], None),
    ],
)
async def test_a_rejected_item_is_kept_counted_and_logged_masked(
    tmp_path: Path, raw: Any, number: str | None
) -> None:
    """The item as it came goes to the quarantine with its reason; the log line names the
    source, the reason and the number, masked."""
    store = await SqliteStore.open(tmp_path / "state.db", dedupe_ttl=86_400.0)
    metrics = Metrics()
    try:
        with captured_logs() as logs:
            await Intake(store, metrics).commit(
                [], source="PullSmsSendStatus", rejected=[RejectedItem(raw, "odd")]
            )
        rows = await store.read(
            lambda connection: connection.execute(
                "SELECT source, reason, raw FROM rejected"
            ).fetchall()
        )
    finally:
        await store.aclose()
    assert [(source, reason, json.loads(text)) for source, reason, text in rows] == [
        ("PullSmsSendStatus", "odd", raw)
    ]
    labels = {"source": "PullSmsSendStatus"}
    assert metrics.registry.get_sample_value("tcsms_poller_rejected_items_total", labels) == 1
    [line] = [line for line in json_lines(logs) if line["event"] == "intake.item_quarantined"]
    assert (line["source"], line["reason"], line["number"]) == ("PullSmsSendStatus", "odd", number)
    assert "1371111" not in str(json_lines(logs))
