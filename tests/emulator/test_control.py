"""Injected receipts carry their send time; one sent after its receipt is refused whole."""

from __future__ import annotations

import httpx
import pytest

from tests.support.emulator_api import NUMBER, Api

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
