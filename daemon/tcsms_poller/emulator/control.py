"""The control endpoints under ``/_emulator/``: what tests and benchmarks use to steer and check.

- ``GET /_emulator/stats``: ``{"seed", "actions": {action: {"requests", "ok", "limit_hits",
  "max_in_window", "lost_items", "errors": {code: n}, "faults": {kind: n}}}, "push":
  {"status"|"reply": {"pushes", "items", "attempts", "delivered", "given_up"}} | null}``
- ``GET /_emulator/truth``: ``{"seed", "messages_sent", "send_statuses": [...],
  "pending_statuses": [...], "replies": [...], "conversions": [...]}``, records in snake_case
  with ``app_id`` and ``handed_out_at`` (UNIX time a queue pull handed the record out, or null);
  ``pending_statuses`` are the placeholders of receipts before the carrier reported
- ``POST /_emulator/records``: ``{"send_statuses": [...], "replies": [...], "push": true}``
  injects exact records (see the models below for defaults; ``"pending": true`` makes a
  receipt's placeholder, before the carrier reported); answers the records as stored
- ``GET``/``POST /_emulator/faults``: ``{"faults": [Fault, ...]}``; a POST replaces every rule
- ``GET``/``POST /_emulator/activation``: ``{"inactive": {action: code}}``, the actions Tencent
  has not activated on the account and the code each is refused with; a POST replaces them all
- ``GET``/``POST /_emulator/polls``: ``{"logging": bool, "polls": [{"phone_number", "arrived",
  "answered"}, ...], "requests": [{"action", "request_id", "arrived", "admitted"}, ...]}``:
  every per-number request answered since logging began, to check that no two polls of one
  number overlapped, and every request that reached a rate limiter, to set a refusal beside
  when its client sent it (times in monotonic seconds, the machine's ``CLOCK_MONOTONIC``); a
  POST ``{"logging": true}`` starts empty logs, ``{"logging": false}`` drops them

A bad body answers 422 ``{"error": "..."}`` and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tcsms_poller.emulator.numbers import split_number
from tcsms_poller.emulator.options import Fault, check_inactive
from tcsms_poller.emulator.state import EmulatorState
from tcsms_poller.emulator.store import ReplyRecord, SendStatusRecord
from tcsms_poller.settings_types import E164

__all__ = ["CONTROL_ROUTES"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendStatusIn(_Model):
    """A receipt to inject; unset fields get realistic defaults."""

    app_id: str | None = None  # default: the first app
    serial_no: str | None = None  # default: a fresh one
    phone_number: E164
    country_code: str | None = None  # default: split from phone_number
    report_status: Literal["SUCCESS", "FAIL"] = "SUCCESS"
    description: str | None = None  # default: DELIVRD, or UNDELIV for FAIL
    user_receive_time: int | None = None  # default: now
    session_context: str | None = None
    # As it shows before the carrier reported (no ReportStatus, Description, UserReceiveTime),
    # indexed by number at user_receive_time until a receipt with its serial_no arrives.
    pending: bool = False
    send_time: int | None = None  # default: a few seconds before user_receive_time


class ReplyIn(_Model):
    """A reply to inject."""

    app_id: str | None = None
    phone_number: E164
    country_code: str | None = None
    sign_name: str = "Tencent Cloud"
    reply_content: str
    reply_time: int | None = None
    extend_code: str = ""


class Injection(_Model):
    """The body of ``POST /_emulator/records``."""

    send_statuses: tuple[SendStatusIn, ...] = ()
    replies: tuple[ReplyIn, ...] = ()
    push: bool = True


class FaultRules(_Model):
    """The body of ``POST /_emulator/faults``."""

    faults: tuple[Fault, ...]


class Activation(_Model):
    """The body of ``POST /_emulator/activation``."""

    inactive: dict[str, str]

    _known = field_validator("inactive")(check_inactive)


class PollLogging(_Model):
    """The body of ``POST /_emulator/polls``."""

    logging: bool


M = TypeVar("M", bound=_Model)


class _BadInputError(ValueError):
    """A control request's body is unusable; the message says why."""


def _app(state: EmulatorState, app_id: str | None) -> str:
    chosen = app_id or state.options.app_ids[0]
    if not state.store.has_app(chosen):
        raise _BadInputError(f"app_id {chosen!r} is not one of {list(state.options.app_ids)}")
    return chosen


def _split(number: str, country_code: str | None) -> tuple[str, str]:
    if country_code is None:
        return split_number(number)
    if not number.startswith("+" + country_code):
        raise _BadInputError(f"phone_number {number} does not start with +{country_code}")
    return country_code, number[1 + len(country_code) :]


def _receipt(state: EmulatorState, given: SendStatusIn) -> SendStatusRecord:
    country_code, subscriber = _split(given.phone_number, given.country_code)
    default_description = "DELIVRD" if given.report_status == "SUCCESS" else "UNDELIV"
    received = given.user_receive_time
    if received is None:
        received = int(state.clock())
    if given.send_time is not None and given.send_time > received:
        raise _BadInputError(f"send_time {given.send_time} is after user_receive_time {received}")
    return SendStatusRecord(
        app_id=_app(state, given.app_id),
        serial_no=given.serial_no or state.make_serial(),
        phone_number=given.phone_number,
        country_code=country_code,
        subscriber_number=subscriber,
        report_status=given.report_status,
        description=given.description or default_description,
        user_receive_time=received,
        session_context=given.session_context,
        send_time=given.send_time,
    )


def _reply(state: EmulatorState, given: ReplyIn) -> ReplyRecord:
    country_code, subscriber = _split(given.phone_number, given.country_code)
    return ReplyRecord(
        app_id=_app(state, given.app_id),
        phone_number=given.phone_number,
        country_code=country_code,
        subscriber_number=subscriber,
        sign_name=given.sign_name,
        reply_content=given.reply_content,
        reply_time=given.reply_time if given.reply_time is not None else int(state.clock()),
        extend_code=given.extend_code,
    )


def _unprocessable(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=422)


async def _read(request: Request, model: type[M]) -> M:
    try:
        document = json.loads(await request.body())
    except ValueError as error:
        raise _BadInputError(f"body is not JSON: {error}") from None
    try:
        return model.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _BadInputError(f"{where}: {first['msg']}") from None


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def get_stats(request: Request) -> Response:
    """Per-action request counters and push counters."""
    return JSONResponse(_state(request).stats_snapshot())


async def get_truth(request: Request) -> Response:
    """Everything generated or injected so far."""
    return JSONResponse(_state(request).truth())


async def post_records(request: Request) -> Response:
    """Inject exact records; all or nothing."""
    state = _state(request)
    try:
        injection = await _read(request, Injection)
        receipts = [_receipt(state, given) for given in injection.send_statuses]
        replies = [_reply(state, given) for given in injection.replies]
    except _BadInputError as error:
        return _unprocessable(str(error))
    stored: list[SendStatusRecord] = []
    for given, receipt in zip(injection.send_statuses, receipts, strict=True):
        if given.pending:
            sent_at = receipt.user_receive_time
            stored.append(state.add_placeholder(receipt, sent_at=sent_at, push=injection.push))
        else:
            stored.append(receipt)
            state.add_send_status(receipt, push=injection.push)
    for reply in replies:
        state.add_reply(reply, push=injection.push)
    return JSONResponse(
        {
            "send_statuses": [asdict(receipt) for receipt in stored],
            "replies": [asdict(reply) for reply in replies],
        }
    )


def _fault_rules(state: EmulatorState) -> Response:
    return JSONResponse({"faults": [rule.model_dump(mode="json") for rule in state.faults.rules]})


def _activation(state: EmulatorState) -> Response:
    return JSONResponse({"inactive": dict(state.inactive)})


async def _replace(
    request: Request,
    model: type[M],
    apply: Callable[[EmulatorState, M], None],
    answer: Callable[[EmulatorState], Response],
) -> Response:
    """A POST that replaces a setting whole: read ``model``, ``apply`` it, answer the new value."""
    state = _state(request)
    try:
        given = await _read(request, model)
    except _BadInputError as error:
        return _unprocessable(str(error))
    apply(state, given)
    return answer(state)


def _set_faults(state: EmulatorState, given: FaultRules) -> None:
    state.faults.replace(given.faults)


def _set_inactive(state: EmulatorState, given: Activation) -> None:
    state.inactive = dict(given.inactive)


def _polls(state: EmulatorState) -> Response:
    log = state.number_log
    polls = [
        {"phone_number": phone, "arrived": arrived, "answered": answered}
        for phone, arrived, answered in log or ()
    ]
    requests = [
        {"action": action, "request_id": request_id, "arrived": arrived, "admitted": admitted}
        for action, request_id, arrived, admitted in state.limit_log or ()
    ]
    return JSONResponse({"logging": log is not None, "polls": polls, "requests": requests})


def _set_poll_logging(state: EmulatorState, given: PollLogging) -> None:
    state.number_log = [] if given.logging else None
    state.limit_log = [] if given.logging else None


async def get_faults(request: Request) -> Response:
    """The fault rules in force."""
    return _fault_rules(_state(request))


async def post_faults(request: Request) -> Response:
    """Replace every fault rule."""
    return await _replace(request, FaultRules, _set_faults, _fault_rules)


async def get_activation(request: Request) -> Response:
    """The actions not activated on the account."""
    return _activation(_state(request))


async def post_activation(request: Request) -> Response:
    """Replace the set of actions not activated (``{}`` activates everything)."""
    return await _replace(request, Activation, _set_inactive, _activation)


async def get_polls(request: Request) -> Response:
    """The per-number requests answered since logging began."""
    return _polls(_state(request))


async def post_polls(request: Request) -> Response:
    """Start an empty log of per-number requests, or stop logging them."""
    return await _replace(request, PollLogging, _set_poll_logging, _polls)


CONTROL_ROUTES = [
    Route("/_emulator/stats", get_stats, methods=["GET"]),
    Route("/_emulator/truth", get_truth, methods=["GET"]),
    Route("/_emulator/records", post_records, methods=["POST"]),
    Route("/_emulator/faults", get_faults, methods=["GET"]),
    Route("/_emulator/faults", post_faults, methods=["POST"]),
    Route("/_emulator/activation", get_activation, methods=["GET"]),
    Route("/_emulator/activation", post_activation, methods=["POST"]),
    Route("/_emulator/polls", get_polls, methods=["GET"]),
    Route("/_emulator/polls", post_polls, methods=["POST"]),
]
