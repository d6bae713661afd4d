"""Injected receipts carry their send time; one sent after its receipt is refused whole; the
log of per-number polls, started, read and dropped over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.emulator_api import APP, NUMBER, Api

pytestmark = pytest.mark.anyio


async def test_an_injected_receipt_keeps_its_send_time(api: Api) -> None:
    """``send_time`` is stored as given (the send-time reading of windows files it there)."""
    injected = await api.inject(
        send_statuses=[{"phone_number": NUMBER, "user_receive_time": 2000, "send_time": 200}]
    )
    assert injected["send_statuses"][0]["send_time"] == 200


async def test_a_receipt_sent_after_it_was_received_is_refused(api: Api) -> None:
    """A send time after the receive time answers 422 and nothing of the body is stored."""
    body = {
        "send_statuses": [
            {"phone_number": NUMBER, "user_receive_time": 1000},
            {"phone_number": NUMBER, "user_receive_time": 1000, "send_time": 1001},
        ]
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{api.emulator.url}/_emulator/records", json=body)
    assert response.status_code == 422
    assert "send_time 1001 is after user_receive_time 1000" in response.json()["error"]
    assert (await api.control("GET", "truth"))["send_statuses"] == []


async def test_the_poll_log_lists_per_number_requests_while_logging(api: Api) -> None:
    """Off at first; once started it lists each per-number request answered (arrival before
    answer) and nothing else, and every request that reached a limiter with its RequestId;
    stopping drops both, and a bad body changes nothing."""
    off = {"logging": False, "polls": [], "requests": []}
    assert await api.control("GET", "polls") == off
    window = {"SmsSdkAppId": APP, "BeginTime": int(time.time()) - 60, "Offset": 0, "Limit": 10}
    await api.call("PullSmsSendStatusByPhoneNumber", {**window, "PhoneNumber": NUMBER})
    on = {"logging": True, "polls": [], "requests": []}
    assert await api.control("POST", "polls", {"logging": True}) == on
    await api.call("PullSmsReplyStatusByPhoneNumber", {**window, "PhoneNumber": NUMBER})
    queue = await api.post("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 10})
    logs = await api.control("GET", "polls")
    [poll] = logs["polls"]
    assert poll["phone_number"] == NUMBER
    assert poll["arrived"] <= poll["answered"]
    assert [(r["action"], r["admitted"]) for r in logs["requests"]] == [
        ("PullSmsReplyStatusByPhoneNumber", True),
        ("PullSmsSendStatus", True),
    ]
    assert logs["requests"][-1]["request_id"] == queue.json()["Response"]["RequestId"]
    assert logs["requests"][0]["arrived"] == poll["arrived"]
    async with httpx.AsyncClient() as http:
        url = f"{api.emulator.url}/_emulator/polls"
        refused = await http.post(url, json={"logging": "maybe"})
    assert refused.status_code == 422
    assert refused.json()["error"].startswith("logging:")
    assert len((await api.control("GET", "polls"))["polls"]) == 1
    assert await api.control("POST", "polls", {"logging": False}) == off
