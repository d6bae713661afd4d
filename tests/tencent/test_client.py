"""The client maps every HTTP answer to a typed result or a classified error, and retries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tcsms_poller.backoff import Backoff
from tcsms_poller.metrics import Metrics
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.errors import (
    AuthError,
    ClockSkewError,
    MalformedResponseError,
    RateLimitedError,
    RequestError,
    ServerError,
    TencentError,
    TransportError,
    error_from_code,
    means_not_activated,
)
from tcsms_poller.tencent.ratelimit import RateLimiters
from tests.support.log_capture import captured_logs, json_lines

LIMITS = {
    "PullSmsReplyStatus": 1000,
    "PullSmsSendStatus": 1000,
    "PullSmsSendStatusByPhoneNumber": 1000,
    "PullSmsReplyStatusByPhoneNumber": 1000,
    "CallbackStatusStatistics": 1000,
    "ReportConversion": 1000,
}
NUMBER = "+8613711112222"
NO_WAIT = RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.001, maximum=0.002))
Handler = Callable[[httpx.Request], httpx.Response]


def answer(body: dict[str, Any], status: int = 200) -> httpx.Response:
    """A Tencent-shaped answer."""
    return httpx.Response(status, json={"Response": {**body, "RequestId": "req-1"}})


def make_client(
    handler: Handler, retry: RetryPolicy = NO_WAIT, metrics: Metrics | None = None
) -> TencentClient:
    """A client whose HTTP answers come from ``handler``."""
    return TencentClient(
        endpoint="https://sms.tencentcloudapi.com",
        region="ap-guangzhou",
        credentials=Credentials("AKIDtest", "secretkey"),
        limiters=RateLimiters(LIMITS),
        metrics=metrics or Metrics(),
        retry=retry,
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


def sequence(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering ``responses`` in turn, and the requests it saw."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = next(queue)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


RECEIPT = {
    "SerialNo": "5000:1045710669157053657849499619",
    "PhoneNumber": "+8615291996666",
    "CountryCode": "86",
    "SubscriberNumber": "15291996666",
    "ReportStatus": "SUCCESS",
    "Description": "DELIVRD",
    "UserReceiveTime": 1620734188,
}


@pytest.mark.anyio
async def test_request_carries_action_version_region_and_signature() -> None:
    """Every request names its action and version and is signed over content-type and host."""
    handler, seen = sequence(answer({"PullSmsSendStatusSet": []}))
    async with make_client(handler) as client:
        await client.pull_sms_send_status("1400006666")
    request = seen[0]
    assert request.headers["X-TC-Action"] == "PullSmsSendStatus"
    assert request.headers["X-TC-Version"] == "2021-01-11"
    assert request.headers["X-TC-Region"] == "ap-guangzhou"
    assert request.headers["Content-Type"] == "application/json"
    assert "SignedHeaders=content-type;host," in request.headers["Authorization"]
    assert json.loads(request.content) == {"SmsSdkAppId": "1400006666", "Limit": 100}


@pytest.mark.anyio
async def test_receipts_parse_into_typed_results() -> None:
    """A receipt page becomes SendStatus values with Tencent's fields mapped."""
    handler, _ = sequence(answer({"PullSmsSendStatusSet": [RECEIPT, {**RECEIPT, "SerialNo": "2"}]}))
    async with make_client(handler) as client:
        page = await client.pull_sms_send_status_by_phone_number(
            "1400006666", "+8615291996666", begin=1620734100, end=1620734200
        )
    assert [item.serial_no for item in page.items] == [RECEIPT["SerialNo"], "2"]
    assert page.items[0].user_receive_time == 1620734188
    assert page.items[0].session_context is None
    assert page.rejected == ()


@pytest.mark.anyio
async def test_null_set_means_an_empty_page() -> None:
    """Tencent answers null when nothing is new; that is not an error."""
    handler, _ = sequence(answer({"PullSmsReplyStatusSet": None}))
    async with make_client(handler) as client:
        page = await client.pull_sms_reply_status("1400006666")
    assert page.items == ()


@pytest.mark.anyio
async def test_one_bad_item_is_rejected_not_the_page() -> None:
    """A queue page is handed out once: a bad item is set aside, the good ones kept."""
    bad = {**RECEIPT, "UserReceiveTime": "yesterday"}
    handler, _ = sequence(answer({"PullSmsSendStatusSet": [RECEIPT, bad, "junk"]}))
    async with make_client(handler) as client:
        page = await client.pull_sms_send_status("1400006666")
    assert len(page.items) == 1
    assert [r.raw for r in page.rejected] == [bad, "junk"]
    assert "UserReceiveTime" in page.rejected[0].reason


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        ("AuthFailure.SignatureFailure", AuthError),
        ("AuthFailure.SignatureExpire", ClockSkewError),
        ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", AuthError),
        ("InvalidParameterValue.IncorrectPhoneNumber", RequestError),
        ("MissingParameter", RequestError),
        ("FailedOperation.JsonParseFail", RequestError),
        ("InternalError.RequestTimeException", ClockSkewError),
        ("InternalError.SigFieldMissing", RequestError),
        ("InternalError.SigVerificationFail", RequestError),
        ("InternalError.RestApiInterfaceNotExist", RequestError),
        ("InternalError.JsonParseFail", RequestError),
    ],
)
async def test_permanent_errors_are_raised_at_once(
    code: str, error_type: type[TencentError]
) -> None:
    """A permanent error is not retried and carries code, message, action and request id."""
    handler, seen = sequence(answer({"Error": {"Code": code, "Message": "nope"}}))
    async with make_client(handler) as client:
        with pytest.raises(error_type) as caught:
            await client.pull_sms_reply_status("1400006666")
    assert len(seen) == 1
    assert (caught.value.code, caught.value.message) == (code, "nope")
    assert (caught.value.action, caught.value.request_id) == ("PullSmsReplyStatus", "req-1")
    assert not caught.value.is_transient


@pytest.mark.parametrize(
    ("code", "not_activated"),
    [
        ("UnauthorizedOperation.RequestPermissionDeny", True),
        ("UnauthorizedOperation", True),
        ("UnsupportedOperation", True),
        ("UnsupportedOperation.", True),
        ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", False),
        ("UnauthorizedOperation.ServiceSuspendDueToArrears", False),
        ("UnauthorizedOperation.RequestIpNotInWhitelist", False),
        ("UnauthorizedOperation.SdkAppIdIsDisabled", False),
        ("AuthFailure.UnauthorizedOperation", False),
        ("InvalidParameter", False),
    ],
)
def test_not_activated_is_the_permission_family_less_other_causes(
    code: str, not_activated: bool
) -> None:
    """Permission and unsupported-operation refusals mean "not activated", unless documented
    for another cause (a wrong app, arrears, the IP allowlist, a disabled app)."""
    assert means_not_activated(error_from_code(code, "")) is not_activated


def test_signature_expire_names_the_clock() -> None:
    """A rejected timestamp tells the operator to fix the clock."""
    error = ClockSkewError("AuthFailure.SignatureExpire", "expired", action="A", request_id="r")
    assert "clock" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (answer({"Error": {"Code": "RequestLimitExceeded", "Message": "slow"}}), RateLimitedError),
        (
            answer({"Error": {"Code": "RequestLimitExceeded.UinLimitExceeded", "Message": ""}}),
            RateLimitedError,
        ),
        (answer({"Error": {"Code": "InternalError.Timeout", "Message": ""}}), ServerError),
        (answer({"Error": {"Code": "ResourceUnavailable.Busy", "Message": ""}}), ServerError),
        (httpx.Response(502, text="bad gateway"), MalformedResponseError),
        (httpx.Response(200, text='{"Response": {"PullSms'), MalformedResponseError),
        (httpx.Response(200, text="<html>oops</html>"), MalformedResponseError),
        (httpx.Response(200, json=["not", "an", "object"]), MalformedResponseError),
        (httpx.Response(200, json={"NoResponse": {}}), MalformedResponseError),
        (httpx.Response(200, json={"Response": {"Error": "text"}}), MalformedResponseError),
        (answer({"PullSmsReplyStatusSet": {"an": "object"}}), MalformedResponseError),
        (httpx.ConnectError("refused"), TransportError),
        (httpx.ReadTimeout("slow"), TransportError),
        (httpx.RemoteProtocolError("peer closed"), TransportError),
    ],
)
async def test_transient_failures_are_retried_then_succeed(
    failure: httpx.Response | Exception, error_type: type[TencentError]
) -> None:
    """Each transient failure is retried; the call then returns the good answer."""
    handler, seen = sequence(failure, answer({"PullSmsReplyStatusSet": []}))
    async with make_client(handler) as client:
        page = await client.pull_sms_reply_status("1400006666")
    assert page.items == ()
    assert len(seen) == 2

    handler, seen = sequence(failure, failure, failure)
    async with make_client(handler) as client:
        with pytest.raises(error_type) as caught:
            await client.pull_sms_reply_status("1400006666")
    assert len(seen) == NO_WAIT.max_attempts
    assert caught.value.is_transient


@pytest.mark.anyio
async def test_statistics_and_conversion_parse() -> None:
    """The statistics counters and the conversion verdict come back typed."""
    stats = {
        "CallbackCount": 1745,
        "RequestSuccessCount": 1880,
        "CallbackFailCount": 401,
        "CallbackSuccessCount": 1344,
        "InternalErrorCount": 0,
        "InvalidNumberCount": 0,
        "ShutdownErrorCount": 401,
        "BlackListCount": 0,
        "FrequencyLimitCount": 0,
    }
    handler, seen = sequence(
        answer({"CallbackStatusStatistics": stats}),
        answer({"ReportConversionStatus": {"Code": "OK", "Message": "report success"}}),
    )
    async with make_client(handler) as client:
        result = await client.callback_status_statistics(
            "1400006666", begin_hour="2021050113", end_hour="2021050123"
        )
        verdict = await client.report_conversion("1400006666", "5000:1", conversion_time=1658310430)
    assert result.counters["callback_count"] == 1745
    assert result.counters["shutdown_error_count"] == 401
    assert verdict.is_ok
    assert json.loads(seen[0].content) == {
        "SmsSdkAppId": "1400006666",
        "BeginTime": "2021050113",
        "EndTime": "2021050123",
        "Limit": 0,
        "Offset": 0,
    }
    assert json.loads(seen[1].content)["ConversionTime"] == 1658310430


@pytest.mark.anyio
async def test_null_or_missing_counters_are_zero() -> None:
    """The SDK's models allow a null counter: null or missing counts 0, not a failed cycle."""
    body = {"CallbackCount": 3, "CallbackSuccessCount": None, "BlackListCount": None}
    handler, seen = sequence(answer({"CallbackStatusStatistics": body}))
    async with make_client(handler) as client:
        result = await client.callback_status_statistics(
            "1400006666", begin_hour="2021050113", end_hour="2021050113"
        )
    assert len(seen) == 1
    assert result.counters["callback_count"] == 3
    assert result.counters["callback_success_count"] == 0
    assert result.counters["black_list_count"] == result.counters["frequency_limit_count"] == 0
    assert len(result.counters) == 9


@pytest.mark.anyio
async def test_statistics_with_a_wrong_type_is_malformed() -> None:
    """A counter that is not a whole number makes the answer malformed (and retried)."""
    handler, _ = sequence(*[answer({"CallbackStatusStatistics": {"CallbackCount": "x"}})] * 3)
    async with make_client(handler) as client:
        with pytest.raises(MalformedResponseError, match="CallbackCount"):
            await client.callback_status_statistics(
                "1", begin_hour="2021050113", end_hour="2021050114"
            )


@pytest.mark.anyio
async def test_credentials_repr_hides_the_key() -> None:
    """Credentials never print their secret parts."""
    shown = repr(Credentials("AKIDvisible", "topsecretkey", token="sts-token"))
    assert "AKIDvisible" in shown
    assert "topsecretkey" not in shown
    assert "sts-token" not in shown


def lost_answers(metrics: Metrics, action: str) -> float:
    """``tcsms_poller_queue_answers_lost_total`` of ``action`` for app 1400006666."""
    value = metrics.registry.get_sample_value(
        "tcsms_poller_queue_answers_lost_total", {"action": action, "app_id": "1400006666"}
    )
    return value or 0.0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "lost"),
    [
        (httpx.ReadTimeout("slow"), True),
        (httpx.ReadError("reset"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.Response(200, text='{"Response": {"PullSms'), True),
        (httpx.Response(502, text="bad gateway"), True),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (answer({"Error": {"Code": "InternalError.Timeout", "Message": ""}}), False),
    ],
)
async def test_queue_answers_failing_after_sending_are_counted_lost(
    failure: httpx.Response | Exception, lost: bool
) -> None:
    """A queue answer that broke after the request was sent counts as lost, once an attempt;
    one refused by Tencent, or never sent, does not."""
    handler, seen = sequence(failure, failure, failure)
    metrics = Metrics()
    client = make_client(handler, metrics=metrics)
    with captured_logs() as out:
        async with client:
            with pytest.raises(TencentError) as caught:
                await client.pull_sms_send_status("1400006666")
    assert caught.value.answer_lost is lost
    assert lost_answers(metrics, "PullSmsSendStatus") == (len(seen) if lost else 0)
    warnings = [e for e in json_lines(out) if e["event"] == "tencent.queue_answer_lost"]
    # Identical warnings within the log throttle's interval are one line, and their count comes
    # out when logging is configured anew (leaving captured_logs); the metric counts all.
    assert [e.get("repeated") for e in warnings] == ([None, len(seen) - 1] if lost else [])


@pytest.mark.anyio
async def test_other_actions_count_no_lost_answers() -> None:
    """Only the queue actions lose records with an answer: a by-number pull is asked again."""
    failure = httpx.ReadTimeout("slow")
    handler, _ = sequence(failure, failure, failure)
    metrics = Metrics()
    async with make_client(handler, metrics=metrics) as client:
        with pytest.raises(TransportError):
            await client.pull_sms_send_status_by_phone_number("1400006666", NUMBER, begin=1)
    assert lost_answers(metrics, "PullSmsSendStatusByPhoneNumber") == 0


@pytest.mark.anyio
async def test_queue_actions_wait_longer_for_their_answer() -> None:
    """Queue pulls get the queue timeout (60 s by default), the other actions the pool's."""
    handler, seen = sequence(
        answer({"PullSmsReplyStatusSet": None}), answer({"PullSmsSendStatusSet": None})
    )
    async with make_client(handler) as client:
        await client.pull_sms_reply_status("1400006666")
        await client.pull_sms_send_status_by_phone_number("1400006666", NUMBER, begin=1)
    assert seen[0].extensions["timeout"]["read"] == 60.0
    assert seen[1].extensions["timeout"]["read"] == 5.0  # the given pool's own (httpx's default)
