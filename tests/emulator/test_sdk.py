"""The official SDK, Tencent's own client, is the judge: it calls every action and is answered."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.sms.v20210111 import models, sms_client_async

from tcsms_poller.emulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    RunningEmulator,
    run_emulator,
)
from tcsms_poller.tencent.api import BEIJING
from tests.support.emulator_api import APP, NUMBER, Api, in_thread, sdk_client

pytestmark = pytest.mark.anyio


def _hour(moment: float) -> str:
    return datetime.fromtimestamp(moment, BEIJING).strftime("%Y%m%d%H")


def _request(model: type[Any], params: dict[str, Any]) -> Any:
    request = model()
    request.from_json_string(json.dumps(params))
    return request


def _answer(response: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(response.to_json_string())
    return answer


async def test_the_sdk_calls_every_action_and_gets_the_records(
    emulator: RunningEmulator, api: Api
) -> None:
    """Receipts, replies, statistics and a conversion, all through the official SDK."""
    now = int(time.time())
    injected = await api.inject(
        send_statuses=[
            {"phone_number": NUMBER, "user_receive_time": now - 60},
            {"phone_number": NUMBER, "user_receive_time": now - 30, "report_status": "FAIL"},
        ],
        replies=[{"phone_number": NUMBER, "reply_content": "Y", "reply_time": now - 10}],
    )
    serials = [status["serial_no"] for status in injected["send_statuses"]]
    client = sdk_client(emulator)
    window = {"SmsSdkAppId": APP, "PhoneNumber": NUMBER, "BeginTime": now - 3600}
    window |= {"Offset": 0, "Limit": 100}

    def calls() -> dict[str, dict[str, Any]]:
        return {
            "statuses": _answer(
                client.PullSmsSendStatus(
                    _request(models.PullSmsSendStatusRequest, {"SmsSdkAppId": APP, "Limit": 100})
                )
            ),
            "replies": _answer(
                client.PullSmsReplyStatus(
                    _request(models.PullSmsReplyStatusRequest, {"SmsSdkAppId": APP, "Limit": 10})
                )
            ),
            "statuses_of": _answer(
                client.PullSmsSendStatusByPhoneNumber(
                    _request(models.PullSmsSendStatusByPhoneNumberRequest, window)
                )
            ),
            "replies_of": _answer(
                client.PullSmsReplyStatusByPhoneNumber(
                    _request(models.PullSmsReplyStatusByPhoneNumberRequest, window)
                )
            ),
            "statistics": _answer(
                client.CallbackStatusStatistics(
                    _request(
                        models.CallbackStatusStatisticsRequest,
                        {
                            "SmsSdkAppId": APP,
                            "BeginTime": _hour(now - 7200),
                            "EndTime": _hour(now + 3600),
                            "Limit": 0,
                            "Offset": 0,
                        },
                    )
                )
            ),
            "conversion": _answer(
                client.ReportConversion(
                    _request(
                        models.ReportConversionRequest,
                        {"SmsSdkAppId": APP, "SerialNo": serials[0], "ConversionTime": now},
                    )
                )
            ),
        }

    answers = await in_thread(calls)
    assert [s["SerialNo"] for s in answers["statuses"]["PullSmsSendStatusSet"]] == serials
    assert answers["statuses"]["PullSmsSendStatusSet"][0] == {
        "SerialNo": serials[0],
        "PhoneNumber": NUMBER,
        "CountryCode": "86",
        "SubscriberNumber": "13711112222",
        "ReportStatus": "SUCCESS",
        "Description": "DELIVRD",
        "UserReceiveTime": now - 60,
        "SessionContext": "",  # as in Tencent's example, for a message sent without one
    }
    assert (
        answers["statuses_of"]["PullSmsSendStatusSet"]
        == (answers["statuses"]["PullSmsSendStatusSet"])
    )
    assert answers["replies"]["PullSmsReplyStatusSet"] == [
        {
            "PhoneNumber": NUMBER,
            "CountryCode": "86",
            "SubscriberNumber": "13711112222",
            "SignName": "Tencent Cloud",
            "ReplyContent": "Y",
            "ReplyTime": now - 10,
            "ExtendCode": "",
        }
    ]
    assert (
        answers["replies_of"]["PullSmsReplyStatusSet"]
        == (answers["replies"]["PullSmsReplyStatusSet"])
    )
    counters = answers["statistics"]["CallbackStatusStatistics"]
    assert counters["RequestSuccessCount"] == 2
    assert counters["CallbackCount"] == 2
    assert counters["CallbackSuccessCount"] == counters["CallbackFailCount"] == 1
    assert counters["InternalErrorCount"] == 1  # UNDELIV, the default failure
    assert answers["conversion"]["ReportConversionStatus"] == {
        "Code": "ok",
        "Message": "report success",
    }
    truth = await api.control("GET", "truth")
    assert [c["serial_no"] for c in truth["conversions"]] == serials[:1]


async def test_the_async_sdk_client_is_answered_too(emulator: RunningEmulator) -> None:
    """The SDK's asyncio client (httpx underneath) gets the same answers."""
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    profile = ClientProfile(
        httpProfile=HttpProfile(endpoint=f"{emulator.host}:{emulator.port}", protocol="http")
    )
    async with sms_client_async.SmsClient(
        credential.Credential(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY), "ap-guangzhou", profile
    ) as client:
        response = await client.PullSmsSendStatus(
            _request(models.PullSmsSendStatusRequest, {"SmsSdkAppId": APP, "Limit": 1})
        )
    assert response.PullSmsSendStatusSet is None  # nothing new: Tencent answers null
    assert response.RequestId


def _sdk_error(emulator: RunningEmulator, *, secret_key: str = DEFAULT_SECRET_KEY) -> str:
    client = sdk_client(emulator, secret_key=secret_key)
    request = _request(models.PullSmsReplyStatusRequest, {"SmsSdkAppId": APP, "Limit": 10})
    with pytest.raises(TencentCloudSDKException) as raised:
        client.PullSmsReplyStatus(request)
    code: str = raised.value.get_code()
    return code


async def test_a_wrong_key_fails_the_signature(emulator: RunningEmulator) -> None:
    """The SDK signing with another key gets AuthFailure.SignatureFailure."""
    code = await in_thread(lambda: _sdk_error(emulator, secret_key="not-the-key"))
    assert code == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize("skew", [-305.0, 305.0])
async def test_a_skewed_clock_expires_the_signature(skew: float) -> None:
    """More than 300 s between the client's and the server's clocks is SignatureExpire.

    Live clocks, so a few seconds past the limit: the SDK's timestamp is a whole second read a
    moment before the server looks at its clock, and a second may begin in between (the exact
    boundary is tested with a fixed clock in test_auth.py).
    """
    options = EmulatorOptions(seed=1)
    async with run_emulator(options, clock=lambda: time.time() + skew) as emulator:
        code = await in_thread(lambda: _sdk_error(emulator))
    assert code == "AuthFailure.SignatureExpire"


async def test_a_clock_within_five_minutes_is_accepted() -> None:
    """290 s of skew is still a valid signature."""
    async with run_emulator(EmulatorOptions(), clock=lambda: time.time() + 290) as emulator:
        client = sdk_client(emulator)
        request = _request(models.PullSmsReplyStatusRequest, {"SmsSdkAppId": APP, "Limit": 10})
        response = await in_thread(lambda: client.PullSmsReplyStatus(request))
    assert response.PullSmsReplyStatusSet is None


async def test_the_sdk_sees_a_validation_error_with_its_code(emulator: RunningEmulator) -> None:
    """An invalid Limit reaches the SDK as the documented error code."""

    def call() -> str:
        request = _request(models.PullSmsSendStatusRequest, {"SmsSdkAppId": APP, "Limit": 101})
        with pytest.raises(TencentCloudSDKException) as raised:
            sdk_client(emulator).PullSmsSendStatus(request)
        code: str = raised.value.get_code()
        return code

    assert await in_thread(call) == "InvalidParameterValue.LimitVerifyFail"
