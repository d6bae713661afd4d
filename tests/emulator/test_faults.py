"""Each fault kind, set at runtime, does what it says and never consumes queue records."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import anyio
import httpx
import pytest

from tcsms_poller.emulator import Fault, FaultKind
from tcsms_poller.emulator.faults import INTERNAL_ERRORS, FaultInjector
from tests.support.emulator import set_faults
from tests.support.emulator_api import APP, NUMBER, Api

pytestmark = pytest.mark.anyio

ACTION = "PullSmsSendStatus"
PULL = {"SmsSdkAppId": APP, "Limit": 100}


@pytest.fixture
async def queued(api: Api) -> list[str]:
    """Three receipts waiting in the queue; their serials."""
    now = int(time.time())
    injected = await api.inject(
        send_statuses=[{"phone_number": NUMBER, "user_receive_time": now - i} for i in range(3)]
    )
    return [status["serial_no"] for status in injected["send_statuses"]]


async def assert_still_queued(api: Api, serials: list[str]) -> None:
    """Nothing was handed out, and a clean pull now gets everything."""
    truth = await api.control("GET", "truth")
    assert [entry["handed_out_at"] for entry in truth["send_statuses"]] == [None] * len(serials)
    await set_faults(api.emulator, [])
    answer = await api.call(ACTION, PULL)
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == serials


async def test_latency_delays_a_normal_answer(api: Api, queued: list[str]) -> None:
    """The answer comes late but complete."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "latency", "seconds": 0.3}])
    started = anyio.current_time()
    answer = await api.call(ACTION, PULL)
    assert anyio.current_time() - started >= 0.3
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == queued
    stats = await api.control("GET", "stats")
    assert stats["actions"][ACTION]["faults"] == {"latency": 1}


async def test_a_timeout_holds_the_line_and_loses_nothing(api: Api, queued: list[str]) -> None:
    """The client times out; the records are still queued."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "timeout", "seconds": 30}])
    with pytest.raises(httpx.ReadTimeout):
        await api.post(ACTION, PULL, read_timeout=0.3)
    await assert_still_queued(api, queued)


async def test_a_held_line_is_answered_when_the_hold_ends(api: Api) -> None:
    """A short hold ends in InternalError.SendAndRecvFail."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "timeout", "seconds": 0.2}])
    assert await api.error_code(ACTION, PULL) == "InternalError.SendAndRecvFail"


async def test_an_http_error_is_an_html_page(api: Api, queued: list[str]) -> None:
    """HTTP 502 with a text/html body."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "http_error", "status": 502}])
    response = await api.post(ACTION, PULL)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    await assert_still_queued(api, queued)


async def test_a_malformed_answer_is_not_json(api: Api, queued: list[str]) -> None:
    """HTTP 200, application/json, and a body that does not parse."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "malformed"}])
    response = await api.post(ACTION, PULL)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    await assert_still_queued(api, queued)


async def half_an_answer(api: Api, kind: str) -> bytes:
    """The body of a pull struck by ``kind``: HTTP 200, well framed, JSON that stops halfway."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": kind}])
    response = await api.post(ACTION, PULL)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    return response.content


async def test_a_truncated_answer_is_half_a_json_document(api: Api, queued: list[str]) -> None:
    """A well-framed HTTP answer whose JSON stops halfway."""
    assert (await half_an_answer(api, "truncated")).startswith(b'{"Response": {')
    await assert_still_queued(api, queued)


async def handed_out(api: Api) -> list[bool]:
    truth = await api.control("GET", "truth")
    return [entry["handed_out_at"] is not None for entry in truth["send_statuses"]]


async def test_a_lost_truncated_answer_hands_the_records_out_then_breaks(
    api: Api, queued: list[str]
) -> None:
    """The pull runs (the records are gone from the queue), the answer is half of it."""
    body = await half_an_answer(api, "lost_truncated")
    assert body.startswith(b'{"Response": {"PullSmsSendStatusSet": [')
    assert await handed_out(api) == [True] * len(queued)
    stats = (await api.control("GET", "stats"))["actions"][ACTION]
    assert (stats["faults"], stats["lost_items"]) == ({"lost_truncated": 1}, len(queued))
    await set_faults(api.emulator, [])
    assert (await api.call(ACTION, PULL))["PullSmsSendStatusSet"] is None


async def test_a_lost_timeout_hands_the_records_out_and_answers_too_late(
    api: Api, queued: list[str]
) -> None:
    """The client gives up waiting; the records were handed out all the same."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "lost_timeout", "seconds": 30}])
    with pytest.raises(httpx.ReadTimeout):
        await api.post(ACTION, PULL, read_timeout=0.3)
    assert await handed_out(api) == [True] * len(queued)
    stats = (await api.control("GET", "stats"))["actions"][ACTION]
    assert stats["lost_items"] == len(queued)


async def test_a_short_lost_timeout_sends_the_whole_answer_late(
    api: Api, queued: list[str]
) -> None:
    """A client patient enough gets the late answer whole."""
    await set_faults(api.emulator, [{"action": ACTION, "kind": "lost_timeout", "seconds": 0.2}])
    answer = await api.call(ACTION, PULL)
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == queued


async def test_an_internal_error_has_the_chosen_or_a_documented_code(
    api: Api, queued: list[str]
) -> None:
    """InternalError.* answers: the configured code, else one of the documented ones."""
    await set_faults(
        api.emulator,
        [{"action": ACTION, "kind": "internal_error", "code": "InternalError.Timeout"}],
    )
    assert await api.error_code(ACTION, PULL) == "InternalError.Timeout"
    await set_faults(api.emulator, [{"kind": "internal_error"}])
    assert await api.error_code(ACTION, PULL) in INTERNAL_ERRORS
    stats = await api.control("GET", "stats")
    assert sum(stats["actions"][ACTION]["errors"].values()) == 2
    await assert_still_queued(api, queued)


async def test_a_rate_limit_burst_refuses_the_action_for_a_while(
    api: Api, queued: list[str]
) -> None:
    """One strike starts a burst of RequestLimitExceeded; other actions are not affected."""
    await set_faults(
        api.emulator, [{"action": ACTION, "kind": "rate_limit", "probability": 1, "seconds": 60}]
    )
    assert await api.error_code(ACTION, PULL) == "RequestLimitExceeded"
    await set_faults(
        api.emulator, [{"action": ACTION, "kind": "latency", "probability": 0, "seconds": 0}]
    )  # replacing the rules ends the burst
    answer = await api.call("PullSmsReplyStatus", PULL)
    assert answer["PullSmsReplyStatusSet"] is None
    await assert_still_queued(api, queued)


def test_a_burst_continues_after_the_rule_stops_striking() -> None:
    """During a burst every request is refused, whatever the dice say."""
    injector = FaultInjector([Fault(kind=FaultKind.RATE_LIMIT, seconds=1.0)], random.Random(1))
    assert injector.strike(ACTION, 10.0).fault is not None
    injector.rules = (Fault(kind=FaultKind.RATE_LIMIT, probability=0.0),)
    assert injector.strike(ACTION, 10.9).fault is not None
    assert injector.strike("ReportConversion", 10.9).fault is None
    assert injector.strike(ACTION, 11.0).fault is None


def test_a_rule_strikes_with_its_probability_and_only_its_action() -> None:
    """A 30 % rule strikes about 30 % of its action's requests and none of the others'."""
    injector = FaultInjector(
        [Fault(action=ACTION, kind=FaultKind.HTTP_ERROR, probability=0.3)], random.Random(3)
    )
    struck = sum(injector.strike(ACTION, 0.0).fault is not None for _ in range(2000))
    assert 500 < struck < 700
    assert all(injector.strike("ReportConversion", 0.0).fault is None for _ in range(100))


def test_latencies_add_up_before_another_fault() -> None:
    """Every striking latency rule adds its delay; the first other rule decides the answer."""
    injector = FaultInjector(
        [
            Fault(kind=FaultKind.LATENCY, seconds=0.1),
            Fault(kind=FaultKind.LATENCY),
            Fault(kind=FaultKind.MALFORMED),
            Fault(kind=FaultKind.TRUNCATED),
        ],
        random.Random(0),
    )
    strike = injector.strike(ACTION, 0.0)
    assert strike.delay == pytest.approx(0.6)
    assert strike.fault is not None
    assert strike.fault.kind is FaultKind.MALFORMED


async def test_bad_fault_rules_are_refused_and_change_nothing(api: Api) -> None:
    """An unknown action or kind answers 422 and the rules in force stay."""
    await set_faults(api.emulator, [{"kind": "malformed", "probability": 0.5}])
    bad_bodies: list[dict[str, Any]] = [
        {"faults": [{"action": "DescribeSmsSignList", "kind": "latency"}]},
        {"faults": [{"kind": "explode"}]},
        {"faults": [{"kind": "latency", "probability": 2}]},
        {"rules": []},
    ]
    for body in bad_bodies:
        response = await api.http.post(f"{api.emulator.url}/_emulator/faults", json=body)
        assert response.status_code == 422
        assert response.json()["error"]
    current = await api.control("GET", "faults")
    assert [(rule["kind"], rule["probability"]) for rule in current["faults"]] == [
        ("malformed", 0.5)
    ]
