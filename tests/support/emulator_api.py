"""Two ways to call an emulator: raw signed HTTP and the official SDK.

The raw caller signs with our ``TC3Auth`` and returns the HTTP answer untouched, for tests about
exact answers; the SDK caller is Tencent's own client (sync, so it runs in a worker thread while
the event loop serves it), the independent judge of what the emulator accepts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
import httpx
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import sms_client

from tcsms_poller.emulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    RunningEmulator,
)
from tcsms_poller.emulator.store import ReplyRecord, SendStatusRecord
from tcsms_poller.tencent import API_VERSION, SERVICE
from tcsms_poller.tencent.signing import TC3Auth

APP = "1400006666"
NUMBER = "+8613711112222"


class Api:
    """Signed raw calls to one emulator."""

    def __init__(self, emulator: RunningEmulator, http: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.http = http

    async def post(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        secret_key: str = DEFAULT_SECRET_KEY,
        secret_id: str = DEFAULT_SECRET_ID,
        clock: Callable[[], float] = time.time,
        headers: Mapping[str, str] | None = None,
        read_timeout: float = 30.0,
    ) -> httpx.Response:
        """POST one action, signed; ``headers`` override the common ones."""
        auth = TC3Auth(secret_id=secret_id, secret_key=secret_key, service=SERVICE, clock=clock)
        common = {
            "Content-Type": "application/json",
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Region": "ap-guangzhou",
            **(headers or {}),
        }
        return await self.http.post(
            self.emulator.url + "/",
            content=json.dumps(params).encode(),
            headers=common,
            auth=auth,
            timeout=read_timeout,
        )

    async def call(self, action: str, params: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        """POST one action and return its ``Response`` object."""
        response = await self.post(action, params, **kwargs)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        answer: dict[str, Any] = response.json()["Response"]
        assert isinstance(answer.pop("RequestId"), str)
        return answer

    async def error_code(self, action: str, params: Mapping[str, Any], **kwargs: Any) -> str:
        """The ``Response.Error.Code`` of a refused call."""
        answer = await self.call(action, params, **kwargs)
        code: str = answer["Error"]["Code"]
        return code

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call a control endpoint under ``/_emulator/``."""
        response = await self.http.request(
            method, f"{self.emulator.url}/_emulator/{path}", json=body
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def inject(self, **body: Any) -> Any:
        """``POST /_emulator/records``."""
        return await self.control("POST", "records", body)


def sdk_client(
    emulator: RunningEmulator, *, secret_key: str = DEFAULT_SECRET_KEY
) -> sms_client.SmsClient:
    """Tencent's official client, pointed at the emulator over plain HTTP."""
    profile = ClientProfile(
        httpProfile=HttpProfile(
            endpoint=f"{emulator.host}:{emulator.port}", protocol="http", reqTimeout=30
        )
    )
    return sms_client.SmsClient(
        credential.Credential(DEFAULT_SECRET_ID, secret_key), "ap-guangzhou", profile
    )


async def in_thread(function: Callable[[], Any]) -> Any:
    """Run a blocking SDK call in a worker thread while the loop keeps serving."""
    return await anyio.to_thread.run_sync(function)


def receipt(
    at: int, serial: str, number: str = NUMBER, status: str = "SUCCESS", *, sent: int | None = None
) -> SendStatusRecord:
    """A receipt of ``number`` at UNIX time ``at``, for a message sent at ``sent``."""
    return SendStatusRecord(
        app_id=APP,
        serial_no=serial,
        phone_number=number,
        country_code="86",
        subscriber_number=number[3:],
        report_status=status,
        description="DELIVRD" if status == "SUCCESS" else "EXPIRED",
        user_receive_time=at,
        session_context=None,
        send_time=sent,
    )


def reply(at: int, text: str, number: str = NUMBER) -> ReplyRecord:
    """A reply from ``number`` at UNIX time ``at``."""
    return ReplyRecord(APP, number, "86", number[3:], "Sign", text, at, "")
