"""``POST /``: one API request through Tencent's gates, in order.

1. the common headers: ``X-TC-Action`` (known, else ``InvalidAction``), ``X-TC-Version``
   (``2021-01-11``, else ``NoSuchVersion``), ``X-TC-Region`` (one of the SMS regions, else the
   common error ``UnsupportedRegion``);
2. the TC3 signature (``auth.py``);
3. the action's rate limit (``RequestLimitExceeded``);
4. faults (``faults.py``), which strike before the action and so never consume records;
5. an action not activated on the account (``inactive``) is refused with its code; else the
   body's parameters and the action itself (``actions.py``);
6. the ``lost_*`` faults, which break the answer of an action that ran.

Every request is counted in the stats; every answer carries a fresh ``RequestId``. A client that
disconnects before its body arrived made no request (nothing can be signed or run): it is not
counted and gets no answer.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from tcsms_poller.emulator.actions import ACTION_HANDLERS, run_action
from tcsms_poller.emulator.answers import (
    ApiError,
    error_body,
    json_answer,
    new_request_id,
    success_body,
)
from tcsms_poller.emulator.auth import verify_request
from tcsms_poller.emulator.options import FaultKind
from tcsms_poller.emulator.params import parse_body
from tcsms_poller.emulator.state import EmulatorState
from tcsms_poller.emulator.stats import ActionStats
from tcsms_poller.tencent import API_VERSION

__all__ = ["handle_api"]


def _check_common_headers(headers: dict[str, str], regions: tuple[str, ...]) -> str:
    """The action named by a request whose common headers are acceptable."""
    action = headers.get("x-tc-action")
    version = headers.get("x-tc-version")
    if not action:
        raise ApiError("MissingParameter", "The request is missing the X-TC-Action header.")
    if not version:
        raise ApiError("MissingParameter", "The request is missing the X-TC-Version header.")
    if version != API_VERSION:
        raise ApiError("NoSuchVersion", f"The API version {version!r} does not exist.")
    if action not in ACTION_HANDLERS:
        raise ApiError("InvalidAction", f"The action {action!r} does not exist.")
    region = headers.get("x-tc-region")
    if not region:
        raise ApiError("MissingParameter", "The request is missing the X-TC-Region header.")
    if region not in regions:
        raise ApiError("UnsupportedRegion", f"The action does not support the region {region!r}.")
    return action


async def _answer(request: Request, body: bytes, state: EmulatorState, request_id: str) -> Response:
    # No await from here to the limiter: arrivals reach it in the order they are timed.
    arrival = state.arrival(request.scope)
    headers = dict(request.headers)
    action = _check_common_headers(headers, state.options.regions)
    verify_request(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers=headers,
        body=body,
        secrets=state.secrets,
        now=state.clock(),
        max_skew=state.options.max_skew,
    )
    stats = state.stats.of(action)
    stats.reached_limiter(arrival)
    admitted = state.limiters[action].admit(arrival)
    if state.limit_log is not None:
        state.limit_log.append((action, request_id, arrival, admitted))
    if not admitted:
        stats.limit_hits += 1
        raise ApiError(
            "RequestLimitExceeded",
            f"The request frequency of {action} exceeded the limit of "
            f"{state.limiters[action].rate} per second.",
        )
    strike = state.faults.strike(action, arrival)
    if strike.delay:
        stats.faults[FaultKind.LATENCY.value] += 1
        await anyio.sleep(strike.delay)
    fault = strike.fault
    if fault is not None and not fault.kind.strikes_after:
        stats.faults[fault.kind.value] += 1
        if fault.kind is FaultKind.TIMEOUT:
            await state.faults.hold(fault, state.closing)
        error = state.faults.error_of(fault)
        if error is not None:
            raise error
        return state.faults.broken_answer(fault, request_id)
    refusal = state.inactive.get(action)
    if refusal is not None:
        raise ApiError(refusal, f"{action} is not activated for this account; contact SMS Helper.")
    state.outbound.release()  # every receipt due by now is pullable
    params = parse_body(body)
    payload = run_action(
        action,
        params,
        state.store,
        state.clock(),
        statistics_end=state.options.statistics_end,
        outbound=state.outbound,
    )
    if state.number_log is not None and "PhoneNumber" in params:
        state.number_log.append((str(params["PhoneNumber"]), arrival, state.monotonic()))
    stats.ok += 1
    if fault is None:
        return json_answer(success_body(payload, request_id))
    stats.faults[fault.kind.value] += 1
    stats.lost_items += _items_in(payload)
    if fault.kind is FaultKind.LOST_TIMEOUT:
        await state.faults.hold(fault, state.closing)
    return state.faults.broken_answer(fault, request_id, payload)


def _items_in(payload: dict[str, Any]) -> int:
    """How many records an answer carries (its ``...Set`` lists)."""
    return sum(len(value) for value in payload.values() if isinstance(value, list))


async def handle_api(request: Request) -> Response:
    """Answer one API request as Tencent would."""
    state: EmulatorState = request.app.state.emulator
    try:
        body = await request.body()
    except ClientDisconnect:  # gone before its body: no request, and no one to answer
        return Response(status_code=400)
    action = request.headers.get("x-tc-action")
    stats: ActionStats = state.stats.of(action if action in ACTION_HANDLERS else None)
    stats.requests += 1
    request_id = new_request_id()
    try:
        return await _answer(request, body, state, request_id)
    except ApiError as error:
        stats.errors[error.code] += 1
        return json_answer(error_body(error, request_id))
