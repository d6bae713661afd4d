"""``/v1/messages``: track sent messages until their receipt (``docs/tracking.md``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tcsms_poller.fields import E164
from tcsms_poller.server.api import (
    _authorize,
    _Body,
    _invalid,
    _json_body,
    _stored,
    _unix_time,
    _validate_items,
)
from tcsms_poller.server.context import ListenerContext
from tcsms_poller.server.errors import ApiError
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import NewMessage, TrackedMessage
from tcsms_poller.state.roles import TrackedMessages
from tcsms_poller.workers.tracking import schedule_of

__all__ = ["MAX_MESSAGES", "MessageRequest", "get_message", "message_view", "track_messages"]

MAX_MESSAGES = 1000
MAX_SERIAL = 128
FUTURE_SKEW = 300  # a sent_at this far ahead of our clock is a mistake, not skew


class MessageRequest(_Body):
    """One item of ``POST /v1/messages``: what ``SendSms`` returned for one number."""

    serial_no: str = Field(min_length=1, max_length=MAX_SERIAL)
    phone_number: E164
    sent_at: Annotated[int | None, BeforeValidator(_unix_time)] = None
    app_id: str | None = None


_MESSAGE = TypeAdapter(MessageRequest)


def message_view(message: TrackedMessage) -> dict[str, Any]:
    """A tracked message as ``GET /v1/messages/<serial_no>`` (and ``track``) shows it."""
    receipt = None
    if message.report_status is not None:
        receipt = {
            "report_status": message.report_status,
            "description": message.description,
            "user_receive_time": message.user_receive_time,
        }
    resolved_at = message.resolved_at
    return {
        "serial_no": message.serial_no,
        "app_id": message.app_id,
        "phone_number": message.phone,
        "sent_at": message.sent_at,
        "state": message.state,
        "resolved_at": None if resolved_at is None else round(resolved_at),
        "receipt": receipt,
    }


async def track_messages(request: Request) -> Response:
    """``POST /v1/messages``: one message or a list of up to 1,000; 201 when any is new."""
    ctx: ListenerContext = request.app.state.ctx
    body = await _json_body(ctx, request)
    store = _messages(ctx)
    items = _validate_items(_MESSAGE, body, limit=MAX_MESSAGES, noun="messages")
    now = ctx.clock()
    by_app: dict[str, list[tuple[int, NewMessage]]] = {}
    for index, item in enumerate(items):
        prefix = f"{index}." if isinstance(body, list) else ""
        app_id = ctx.app_id(item.app_id)
        if app_id not in ctx.tracking or not ctx.tracking[app_id].enabled:
            raise _invalid(
                [{"field": f"{prefix}app_id", "message": f"tracking is disabled for app {app_id}"}]
            )
        sent_at = int(now) if item.sent_at is None else item.sent_at
        if sent_at > now + FUTURE_SKEW:
            raise _invalid([{"field": f"{prefix}sent_at", "message": "in the future"}])
        message = NewMessage(app_id, item.serial_no, item.phone_number, sent_at)
        by_app.setdefault(app_id, []).append((index, message))
    created = [False] * len(items)
    for app_id, messages in by_app.items():
        schedule = schedule_of(ctx.tracking[app_id])
        flags = await _stored(ctx, store.track([m for _, m in messages], schedule=schedule))
        for (index, _), flag in zip(messages, flags, strict=True):
            created[index] = flag
    answers = [
        {"serial_no": item.serial_no, "created": flag}
        for item, flag in zip(items, created, strict=True)
    ]
    status = 201 if any(created) else 200
    return JSONResponse(answers if isinstance(body, list) else answers[0], status_code=status)


async def get_message(request: Request) -> Response:
    """``GET /v1/messages/<serial_no>``: its state and, when known, its receipt."""
    ctx: ListenerContext = request.app.state.ctx
    _authorize(ctx, request)
    serial_no = request.path_params["serial_no"]
    if not 1 <= len(serial_no) <= MAX_SERIAL:
        raise ApiError(
            422, "invalid serial_no", fields=[{"field": "serial_no", "message": "1..128 chars"}]
        )
    message = await _stored(ctx, _messages(ctx).get(serial_no))
    if message is None:
        raise ApiError(404, "message is not tracked")
    return JSONResponse(message_view(message))


def _messages(ctx: ListenerContext) -> TrackedMessages:
    """The tracked messages of the state."""
    return tracked_messages(ctx.store, clock=ctx.clock)
