"""SendSms: the official SDK sends through the emulator; receipts follow with a seeded delay."""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

import anyio
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.sms.v20210111 import models

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, run_emulator
from tcsms_poller.emulator.options import ReceiptDelays
from tcsms_poller.emulator.sending import Outbound
from tests.support.emulator_api import APP, NUMBER, Api, in_thread, sdk_client
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

OTHER = "+8613900001111"


def _send_request(params: dict[str, Any]) -> models.SendSmsRequest:
    request = models.SendSmsRequest()
    request.from_json_string(json.dumps(params))
    return request


async def test_the_sdk_sends_and_the_receipts_follow() -> None:
    """Each number gets a SerialNo (SDK fields), and its receipt is pullable once due."""
    fast = ReceiptDelays(median=0.2, p95=0.5, late_share=0, never_share=0, fail_ratio=0)
    async with run_emulator(EmulatorOptions(seed=3, receipts=fast)) as emulator:
        client = sdk_client(emulator)
        params = {
            "PhoneNumberSet": [NUMBER, OTHER, "13711112222"],
            "SmsSdkAppId": APP,
            "TemplateId": "449739",
            "SignName": "Tencent Cloud",
            "TemplateParamSet": ["1234"],
            "SessionContext": "order-7",
        }
        response = await in_thread(lambda: client.SendSms(_send_request(params)))
        statuses = response.SendStatusSet
        assert [s.PhoneNumber for s in statuses] == [NUMBER, OTHER, "13711112222"]
        assert [s.Code for s in statuses] == [
            "Ok",
            "Ok",
            "InvalidParameterValue.IncorrectPhoneNumber",
        ]
        assert statuses[0].Fee == 1
        assert statuses[0].IsoCode == "CN"
        assert statuses[0].SessionContext == "order-7"
        serials = [s.SerialNo for s in statuses[:2]]
        assert all(serials)
        assert serials[0] != serials[1]
        assert statuses[2].SerialNo == ""

        async def pulled() -> list[str]:
            request = models.PullSmsSendStatusRequest()
            request.from_json_string(json.dumps({"SmsSdkAppId": APP, "Limit": 100}))
            answer = await in_thread(lambda: client.PullSmsSendStatus(request))
            return [s.SerialNo for s in answer.PullSmsSendStatusSet or []]

        got: list[str] = []
        deadline = time.monotonic() + 20
        while set(got) != set(serials) and time.monotonic() < deadline:
            got += await pulled()
            await anyio.sleep(0.05)  # a poll interval well under the action's 100/s
        assert sorted(got) == sorted(serials)
        sent = emulator.state.outbound.sent
        assert {sent[s].phone_number for s in serials} == {NUMBER, OTHER}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"SmsSdkAppId": APP, "TemplateId": "1"}, "MissingParameter"),
        ({"PhoneNumberSet": [], "SmsSdkAppId": APP, "TemplateId": "1"}, "LimitExceeded"),
        ({"PhoneNumberSet": [NUMBER], "SmsSdkAppId": APP}, "MissingParameter"),
        ({"PhoneNumberSet": [NUMBER], "SmsSdkAppId": "1400000000", "TemplateId": "1"}, "Unauth"),
        ({"PhoneNumberSet": NUMBER, "SmsSdkAppId": APP, "TemplateId": "1"}, "InvalidParameter"),
    ],
)
async def test_a_bad_send_is_refused_and_sends_nothing(
    api: Api, emulator: RunningEmulator, params: dict[str, Any], code: str
) -> None:
    """Tencent's error codes; no message is recorded."""
    assert (await api.error_code("SendSms", params)).startswith(code)
    assert emulator.state.outbound.sent == {}


def test_the_delays_follow_the_distribution_and_the_seed() -> None:
    """Median about 5 s, 95 % within a minute, about 1 % hours late, about 0.5 % never."""

    def draw(seed: int) -> list[float | None]:
        outbound = Outbound(ReceiptDelays(), sink=None, clock=time.time, rng=random.Random(seed))  # type: ignore[arg-type]
        return [outbound.delay() for _ in range(40_000)]

    delays = draw(1)
    assert delays == draw(1)
    assert delays != draw(2)
    never = delays.count(None) / len(delays)
    came = sorted(d for d in delays if d is not None)
    late = sum(1 for d in came if d >= 3600) / len(delays)
    assert 0.003 < never < 0.007
    assert 0.007 < late < 0.013
    assert 4.0 < statistics.median(came) < 6.0
    within_minute = sum(1 for d in came if d <= 60) / len(delays)
    assert 0.92 < within_minute < 0.96


async def test_the_sdk_sees_an_error_for_an_unknown_app(emulator: RunningEmulator) -> None:
    """An app of another account fails the whole request, as for every action."""
    client = sdk_client(emulator)
    params = {"PhoneNumberSet": [NUMBER], "SmsSdkAppId": "1400000001", "TemplateId": "1"}
    with pytest.raises(TencentCloudSDKException) as raised:
        await in_thread(lambda: client.SendSms(_send_request(params)))
    assert raised.value.code == "UnauthorizedOperation.SmsSdkAppIdVerifyFail"
    await wait_until(lambda: emulator.state.outbound.sent == {}, timeout=10.0, interval=0.01)
