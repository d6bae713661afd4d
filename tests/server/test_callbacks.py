"""Tencent's pushes through the listener into the same dedupe and outbox as pulled records."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tcsms_poller.records import reply_id
from tcsms_poller.tencent.models import ReplyStatus
from tests.server.conftest import APP, OTHER_APP, SECRET, Listener
from tests.support.log_capture import captured_logs, json_lines

pytestmark = pytest.mark.anyio

RECEIPT = {
    "user_receive_time": "2025-11-25 16:00:01",
    "nationcode": "86",
    "mobile": "13711112222",
    "report_status": "SUCCESS",
    "errmsg": "DELIVRD",
    "description": "user received",
    "sid": "2019:-123456789",
    "ext": "order-42",
}
REPLY = {
    "extend": "01",
    "mobile": "13711112222",
    "nationcode": "86",
    "sign": "Tencent",
    "text": "TD",
    "time": 1764057601,
}


async def outbox(listener: Listener) -> list[dict[str, Any]]:
    return [row.as_dict() for row in await listener.store.read_outbox(after=0, limit=1000)]


async def test_status_push_is_committed_then_acknowledged(listener: Listener) -> None:
    second = {**RECEIPT, "sid": "2019:-987", "report_status": "FAIL", "errmsg": "MK:0001"}
    del second["ext"]
    response = await listener.client.post(f"/callback/{SECRET}/status", json=[RECEIPT, second])
    assert response.status_code == 200
    assert response.json() == {"result": 0, "errmsg": "OK"}
    records = await outbox(listener)
    assert [(r["kind"], r["id"], r["source"]) for r in records] == [
        ("send_status", "2019:-123456789", "callback"),
        ("send_status", "2019:-987", "callback"),
    ]
    first = records[0]
    assert first["phone_number"] == "+8613711112222"
    assert first["user_receive_time"] == 1764057601  # 16:00:01 in Beijing is 08:00:01 UTC
    assert first["session_context"] == "order-42"
    assert first["app_id"] == APP
    assert (first["description"], first["description_text"]) == ("DELIVRD", "user received")
    assert records[1]["session_context"] is None  # ext is optional (Tencent does not document it)


async def record_counts(listener: Listener) -> dict[str, float]:
    """``tcsms_poller_records_total`` of pushed receipts by outcome, parsed from ``/metrics``."""
    text = (await listener.client.get("/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return {
        sample.labels["outcome"]: sample.value
        for sample in families["tcsms_poller_records"].samples
        if sample.name == "tcsms_poller_records_total"
        and (sample.labels["kind"], sample.labels["source"]) == ("send_status", "callback")
    }


async def test_a_repeated_push_is_acknowledged_and_not_stored_twice(listener: Listener) -> None:
    assert await record_counts(listener) == {}
    for pushes in (1, 2, 3):
        response = await listener.client.post(f"/callback/{SECRET}/status", json=[RECEIPT])
        assert response.json() == {"result": 0, "errmsg": "OK"}
        counts = await record_counts(listener)
        assert counts == ({"new": 1.0, "duplicate": pushes - 1.0} if pushes > 1 else {"new": 1.0})
    assert len(await outbox(listener)) == 1


async def test_reply_push_gets_the_id_of_the_pulled_copy(listener: Listener) -> None:
    response = await listener.client.post(
        f"/callback/{SECRET}/reply?app_id={OTHER_APP}",
        content=str(REPLY).replace("'", '"'),
        headers={"content-type": "text/plain"},  # Tencent's content type is not documented
    )
    assert response.json() == {"result": 0, "errmsg": "OK"}
    pulled = ReplyStatus(
        phone_number="+8613711112222",
        country_code="86",
        subscriber_number="13711112222",
        sign_name="Tencent",
        reply_content="TD",
        reply_time=1764057601,
        extend_code="01",
    )
    [record] = await outbox(listener)
    assert record["id"] == reply_id(OTHER_APP, pulled)
    assert record["app_id"] == OTHER_APP


@pytest.mark.parametrize(
    ("path", "body", "status", "errmsg"),
    [
        ("/callback/wrong-secret-0123456789/status", [RECEIPT], 404, None),
        (f"/callback/{SECRET}/other", [RECEIPT], 404, None),
        (
            f"/callback/{SECRET}/status",
            [],
            400,
            "body: expected a non-empty JSON array of receipts",
        ),
        (f"/callback/{SECRET}/status", [RECEIPT] * 101, 400, "body: at most 100 receipts per push"),
        (f"/callback/{SECRET}/reply", [REPLY], 400, "body: expected a JSON object"),
        (
            f"/callback/{SECRET}/status",
            {"sid": "x"},
            400,
            "body: expected a non-empty JSON array of receipts",
        ),
        (f"/callback/{SECRET}/status?app_id=42", [RECEIPT], 400, "app_id '42' is not configured"),
    ],
)
async def test_bad_pushes_are_refused_and_change_nothing(
    listener: Listener, path: str, body: Any, status: int, errmsg: str | None
) -> None:
    before = await listener.snapshot()
    response = await listener.client.post(path, json=body)
    assert response.status_code == status
    if errmsg is not None:
        assert response.json() == {"result": 1, "errmsg": errmsg}
    assert await listener.snapshot() == before


async def test_invalid_json_and_oversized_bodies(listener: Listener) -> None:
    before = await listener.snapshot()
    response = await listener.client.post(f"/callback/{SECRET}/status", content=b"[{")
    assert response.status_code == 400
    assert response.json()["errmsg"].startswith("body is not valid JSON")
    big = b"[" + b" " * (64 * 1024) + b"]"
    response = await listener.client.post(f"/callback/{SECRET}/status", content=big)
    assert response.status_code == 413

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(100):
            yield b" " * 1024

    response = await listener.client.post(f"/callback/{SECRET}/status", content=chunks())
    assert response.status_code == 413
    assert await listener.snapshot() == before


async def quarantined(listener: Listener) -> list[tuple[str, str, Any]]:
    """The state's quarantine: source, reason and the item as it came."""

    def rows(connection: Any) -> list[tuple[str, str, Any]]:
        query = "SELECT source, reason, raw FROM rejected ORDER BY id"
        return [
            (source, reason, json.loads(raw)) for source, reason, raw in connection.execute(query)
        ]

    return await listener.store.read(rows)


def counter(listener: Listener, name: str, **labels: str) -> float:
    value = listener.metrics.registry.get_sample_value(f"tcsms_poller_{name}_total", labels)
    return value or 0.0


async def test_odd_receipts_are_quarantined_and_the_good_ones_acknowledged(
    listener: Listener,
) -> None:
    """One push of good, odd and not-yet-final receipts: the good ones (lower-case status
    included) are committed, the odd ones kept in the quarantine and logged with the number
    masked, the pending one only counted, and Tencent gets OK."""
    odd = [
        {**RECEIPT, "sid": "odd-1", "report_status": "MAYBE"},
        {**RECEIPT, "sid": "odd-2", "user_receive_time": ""},
        {key: value for key, value in RECEIPT.items() if key != "nationcode"} | {"sid": "odd-3"},
    ]
    pending = {**RECEIPT, "sid": "later", "report_status": "", "user_receive_time": ""}
    body = [RECEIPT, *odd, pending, {**RECEIPT, "sid": "lower", "report_status": "fail"}]
    with captured_logs() as logs:
        response = await listener.client.post(f"/callback/{SECRET}/status", json=body)
    assert response.json() == {"result": 0, "errmsg": "OK"}
    records = await outbox(listener)
    assert [(r["id"], r["report_status"]) for r in records] == [
        ("2019:-123456789", "SUCCESS"),
        ("lower", "FAIL"),
    ]
    assert [(source, raw) for source, _, raw in await quarantined(listener)] == [
        ("callback", item) for item in odd
    ]
    assert counter(listener, "rejected_items", source="callback") == 3
    assert counter(listener, "receipts_pending", source="callback") == 1
    lines = [line for line in json_lines(logs) if line["event"] == "intake.item_quarantined"]
    assert [line["reason"] for line in lines] == [
        "report_status 'MAYBE' is neither SUCCESS nor FAIL",
        "user_receive_time: expected a non-empty string",
        "nationcode: expected a non-empty string",
    ]
    assert [line["number"] for line in lines[:2]] == ["+86137****2222"] * 2
    assert not any("13711112222" in str(line) for line in json_lines(logs))


async def test_a_pending_receipt_never_dedupes_the_final_one(listener: Listener) -> None:
    """A receipt pushed first without a status is not seen; its final push is delivered."""
    placeholder = {**RECEIPT, "report_status": "", "errmsg": "", "user_receive_time": ""}
    for body in ([placeholder], [placeholder, placeholder], [RECEIPT], [placeholder]):
        response = await listener.client.post(f"/callback/{SECRET}/status", json=body)
        assert response.json() == {"result": 0, "errmsg": "OK"}
    [record] = await outbox(listener)
    assert (record["id"], record["report_status"]) == (RECEIPT["sid"], "SUCCESS")
    assert counter(listener, "receipts_pending", source="callback") == 4
    assert await quarantined(listener) == []


async def test_an_odd_reply_is_quarantined_and_acknowledged(listener: Listener) -> None:
    """A reply object with an odd field is kept, not refused: Tencent's retries would bring the
    same object, and after two the reply would be lost."""
    odd = {**REPLY, "time": "soon"}
    response = await listener.client.post(f"/callback/{SECRET}/reply", json=odd)
    assert response.json() == {"result": 0, "errmsg": "OK"}
    assert await outbox(listener) == []
    assert await quarantined(listener) == [
        ("callback", "time: expected a UNIX time in seconds", odd)
    ]
    assert counter(listener, "rejected_items", source="callback") == 1
