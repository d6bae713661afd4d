"""Receipts end to end: a not-yet-final receipt is never delivered and never hides the final one,
and the same receipt or reply pulled and pushed makes the same record."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tcsms_poller.emulator import RunningEmulator
from tcsms_poller.emulator.pusher import status_payload
from tcsms_poller.emulator.store import SendStatusRecord
from tcsms_poller.records import record_schema
from tests.e2e.test_listener import server
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import NUMBER, expected_ids, inject, truth
from tests.support.jsonl import read_jsonl
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio
STATUS_PULLS = ("PullSmsSendStatus", "PullSmsSendStatusByPhoneNumber")


async def counters(port: int, name: str, label: str, **match: str) -> Counter[str]:
    """A counter of the daemon's ``/metrics`` by ``label``, over the samples matching ``match``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == f"tcsms_poller_{name}_total" and match.items() <= labels.items():
                found[labels[label]] += int(sample.value)
    return found


async def until_counted(
    port: int, name: str, label: str, least: dict[str, int], **match: str
) -> None:
    """Poll ``/metrics`` until the counter reaches ``least`` for each label value."""
    seen: Counter[str] = Counter()
    try:
        with anyio.fail_after(60):
            while any(seen[key] < count for key, count in least.items()):
                await anyio.sleep(0.05)
                seen = await counters(port, name, label, **match)
    except TimeoutError:
        raise AssertionError(f"{name} by {label}: {dict(seen)}, wanted {least}") from None


def validate(records: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(record_schema())
    for record in records:
        validator.validate(record)


@pytest.mark.parametrize("pushing_emulator", ["empty", "null", "absent"], indirect=True)
async def test_a_placeholder_is_never_delivered_and_its_receipt_is_once(
    tmp_path: Path, pushing_emulator: RunningEmulator, port: int
) -> None:
    """Receipts show first without ReportStatus by queue, by number and by push: the daemon
    counts them pending and delivers nothing; the final receipts, by all three paths, are
    delivered once each. A placeholder let through would have taken the SerialNo first.
    Each way a ReportStatus can be missing: empty, null, absent."""
    output = tmp_path / "records.jsonl"
    config = daemon_config(
        pushing_emulator.url,
        tmp_path,
        server=server(port),
        app={
            "replies": {"enabled": False},
            "by_number": {"numbers": [NUMBER], "interval": "500ms"},
        },
    )
    now = int(time.time())
    serials = [f"5000:{index}" for index in range(5)]
    async with running_daemon(tmp_path, config) as daemon:
        placeholders = [
            {"phone_number": NUMBER, "serial_no": serial, "user_receive_time": now - 30}
            for serial in serials
        ]
        await inject(
            pushing_emulator,
            send_statuses=[item | {"pending": True} for item in placeholders],
            push=True,
        )
        paths = dict.fromkeys((*STATUS_PULLS, "callback"), len(serials))
        await until_counted(port, "receipts_pending", "source", paths)
        assert read_jsonl(output) == []
        finals = [
            item | {"user_receive_time": now - 5, "report_status": "FAIL" if i else "SUCCESS"}
            for i, item in enumerate(placeholders)
        ]
        await inject(pushing_emulator, send_statuses=finals, push=True)
        # Every path brought the finals: once new, otherwise as duplicates.
        await until_counted(port, "records", "source", paths, kind="send_status")
        await daemon.stop()
    records = read_jsonl(output)
    validate(records)
    assert sorted(record["id"] for record in records) == serials
    assert [record["report_status"] for record in records] == ["SUCCESS"] + ["FAIL"] * 4
    assert {record["user_receive_time"] for record in records} == {now - 5}
    held = await truth(pushing_emulator)
    assert all(item["handed_out_at"] for item in held["pending_statuses"])


async def test_the_same_receipt_pulled_and_pushed_is_the_same_record(
    tmp_path: Path, pushing_emulator: RunningEmulator, port: int
) -> None:
    """One daemon pulls, another only listens to the pushes of the same records: each record
    is the same field by field, but for what tells the copies apart by design:
    ``source`` (the path it came by) and ``received_at`` (when that daemon got it), and
    ``description_text``, the push's human-readable text, which no pull API carries.
    ``session_context`` comes by push only in ``ext``, which Tencent does not document: without
    it the pushed copy has none."""
    now = int(time.time())
    pull_dir, push_dir = tmp_path / "pull", tmp_path / "push"
    puller = daemon_config(pushing_emulator.url, pull_dir)
    listener = daemon_config(
        pushing_emulator.url,
        push_dir,
        server=server(port),
        app={"replies": {"enabled": False}, "send_status": {"enabled": False}},
    )
    async with (
        running_daemon(pull_dir, puller) as pulling,
        running_daemon(push_dir, listener) as pushed_to,
    ):
        created = await inject(
            pushing_emulator,
            send_statuses=[
                {"phone_number": NUMBER, "user_receive_time": now - 9},
                {
                    "phone_number": NUMBER,
                    "report_status": "FAIL",
                    "description": "MK:0001",
                    "session_context": "",
                },
                {"phone_number": "+14155550100", "session_context": "order-7"},
            ],
            replies=[
                {"phone_number": NUMBER, "reply_content": "退订", "extend_code": "11"},
                {"phone_number": NUMBER, "reply_content": "Y", "reply_time": now - 3},
            ],
            push=True,
        )
        ids = expected_ids(created)

        def arrived(directory: Path) -> bool:
            return {record["id"] for record in read_jsonl(directory / "records.jsonl")} >= ids

        await wait_until(lambda: arrived(pull_dir) and arrived(push_dir), what="both copies")
        await pulling.stop()
        await pushed_to.stop()
    pulled = {record["id"]: record for record in read_jsonl(pull_dir / "records.jsonl")}
    pushed = {record["id"]: record for record in read_jsonl(push_dir / "records.jsonl")}
    assert set(pulled) == set(pushed) == ids
    validate([*pulled.values(), *pushed.values()])
    carried_ext = {
        item["serial_no"]: "ext" in status_payload(SendStatusRecord(**item))
        for item in created["send_statuses"]
    }
    for id_, copy in pulled.items():
        other = pushed[id_]
        assert copy["source"] in ("PullSmsSendStatus", "PullSmsReplyStatus")
        assert other["source"] == "callback"
        differ = {"source", "received_at"}
        if copy["kind"] == "send_status":
            differ.add("description_text")
            assert copy["description_text"] is None
            assert other["description_text"]  # the text beside the carrier code
            if not carried_ext[id_]:
                differ.add("session_context")
                assert other["session_context"] is None
        assert {k: v for k, v in copy.items() if k not in differ} == {
            k: v for k, v in other.items() if k not in differ
        }, id_
    by_serial = {item["serial_no"]: item for item in created["send_statuses"]}
    contexts = {id_: pulled[id_]["session_context"] for id_ in by_serial}
    assert sorted(contexts.values(), key=str) == [None, None, "order-7"]  # "" is none
