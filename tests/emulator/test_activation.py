"""Actions Tencent has not activated on the account: refused with a plausible code, live."""

from __future__ import annotations

import pytest

from tcsms_poller.emulator import NOT_ACTIVATED_CODES, EmulatorOptions
from tests.support.emulator_api import APP, Api

pytestmark = pytest.mark.anyio

PULL = {"SmsSdkAppId": APP, "Limit": 100}


@pytest.fixture
def options() -> EmulatorOptions:
    return EmulatorOptions(seed=7, inactive={"PullSmsReplyStatus": NOT_ACTIVATED_CODES[0]})


async def test_an_inactive_action_is_refused_and_the_others_work(api: Api) -> None:
    """Only the inactive action is refused, with its code."""
    assert await api.error_code("PullSmsReplyStatus", PULL) == NOT_ACTIVATED_CODES[0]
    assert await api.call("PullSmsSendStatus", PULL) == {"PullSmsSendStatusSet": None}


@pytest.mark.parametrize("code", NOT_ACTIVATED_CODES)
async def test_activation_changes_live(api: Api, code: str) -> None:
    """The control endpoint sets each plausible code, and ``{}`` activates everything."""
    answer = await api.control("POST", "activation", {"inactive": {"PullSmsSendStatus": code}})
    assert answer == {"inactive": {"PullSmsSendStatus": code}}
    assert await api.error_code("PullSmsSendStatus", PULL) == code
    assert await api.call("PullSmsReplyStatus", PULL) == {"PullSmsReplyStatusSet": None}
    assert await api.control("POST", "activation", {"inactive": {}}) == {"inactive": {}}
    assert await api.call("PullSmsSendStatus", PULL) == {"PullSmsSendStatusSet": None}
    assert await api.control("GET", "activation") == {"inactive": {}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inactive": {"DescribeSmsSignList": "UnsupportedOperation"}},
            "unknown action 'DescribeSmsSignList'",
        ),
        ({"inactive": {"PullSmsSendStatus": "InvalidParameter"}}, "code 'InvalidParameter'"),
        ({"inactive": []}, "inactive"),
        ({}, "inactive"),
    ],
)
async def test_a_bad_activation_is_refused_and_changes_nothing(
    api: Api, body: object, message: str
) -> None:
    """422 with a one-line reason; the account stays as it was."""
    response = await api.http.post(f"{api.emulator.url}/_emulator/activation", json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]
    assert await api.control("GET", "activation") == {
        "inactive": {"PullSmsReplyStatus": NOT_ACTIVATED_CODES[0]}
    }


async def test_an_activation_body_that_is_not_json_is_refused(api: Api) -> None:
    """A body that is not JSON is a 422 too."""
    response = await api.http.post(f"{api.emulator.url}/_emulator/activation", content=b"{")
    assert response.status_code == 422
    assert response.json()["error"].startswith("body is not JSON")
