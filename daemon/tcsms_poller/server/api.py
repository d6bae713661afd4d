"""The local API under ``/v1``: track numbers for per-number polling, queue conversions.

Every route needs the bearer token (compared in constant time), a JSON content type for bodies,
and a body that validates; anything else is a 4xx with a field-level message and changes nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tcsms_poller.fields import E164, Duration, is_e164
from tcsms_poller.server.bodies import read_json
from tcsms_poller.server.context import ListenerContext
from tcsms_poller.server.errors import ApiError
from tcsms_poller.state import StateError

__all__ = ["add_conversions", "list_numbers", "track_number", "untrack_number"]

MAX_TRACK_FOR = 30 * 86_400.0
MAX_CONVERSIONS = 1000
MAX_PAGE = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackRequest(_Body):
    """``POST /v1/numbers``."""

    phone_number: E164
    app_id: str | None = None
    track_for: Duration = Field(default=7 * 86_400.0, le=MAX_TRACK_FOR)


class ConversionRequest(_Body):
    """One item of ``POST /v1/conversions``."""

    serial_no: str = Field(min_length=1, max_length=128)
    app_id: str | None = None
    conversion_time: int | None = Field(default=None, ge=0, le=2**32)


T = TypeVar("T")


def _authorize(ctx: ListenerContext, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = ctx.settings.token.reveal().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8", "surrogateescape"), expected
    ):
        raise ApiError(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


async def _json_body(ctx: ListenerContext, request: Request) -> Any:
    _authorize(ctx, request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, "send the body as application/json")
    return await read_json(request, ctx.settings.max_body)


def _validate(adapter: TypeAdapter[T], body: Any) -> T:
    try:
        return adapter.validate_python(body)
    except ValidationError as error:
        fields = [
            {
                "field": ".".join(str(part) for part in problem["loc"]) or "body",
                "message": problem["msg"].removeprefix("Value error, "),
            }
            for problem in error.errors(include_url=False)
        ]
        raise ApiError(422, "invalid body", fields=fields) from None


async def _stored(ctx: ListenerContext, work: Awaitable[T]) -> T:
    try:
        return await work
    except StateError as error:
        ctx.health.failed(str(error))  # it names the state database
        raise ApiError(503, "state database unavailable, try again") from None


_TRACK = TypeAdapter(TrackRequest)
_CONVERSION = TypeAdapter(ConversionRequest)
_CONVERSION_LIST = TypeAdapter(list[ConversionRequest])


async def track_number(request: Request) -> Response:
    """``POST /v1/numbers``: track a number for ``track_for`` (extends, never shortens)."""
    ctx: ListenerContext = request.app.state.ctx
    body = _validate(_TRACK, await _json_body(ctx, request))
    app_id = ctx.app_id(body.app_id)
    created = await _stored(
        ctx, ctx.store.track_number(app_id, body.phone_number, track_for=body.track_for)
    )
    return JSONResponse(
        {
            "app_id": app_id,
            "phone_number": body.phone_number,
            "tracked_until": round(ctx.clock() + body.track_for),
            "created": created,
        },
        status_code=201 if created else 200,
    )


async def untrack_number(request: Request) -> Response:
    """``DELETE /v1/numbers/<E.164>[?app_id=]``."""
    ctx: ListenerContext = request.app.state.ctx
    _authorize(ctx, request)
    phone = request.path_params["phone"]
    if not is_e164(phone):
        raise ApiError(
            422, "invalid number", fields=[{"field": "phone_number", "message": "not E.164"}]
        )
    app_id = ctx.app_id(request.query_params.get("app_id"))
    if not await _stored(ctx, ctx.store.untrack_number(app_id, phone)):
        raise ApiError(404, "number is not tracked")
    return Response(status_code=204)


def _page_size(text: str | None) -> int:
    if text is None:
        return 100
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise ApiError(
            422, "invalid limit", fields=[{"field": "limit", "message": f"1..{MAX_PAGE}"}]
        )
    return int(text)


async def list_numbers(request: Request) -> Response:
    """``GET /v1/numbers[?app_id=&limit=&after=]``: a page in (app, number) order."""
    ctx: ListenerContext = request.app.state.ctx
    _authorize(ctx, request)
    query = request.query_params
    app_id = ctx.app_id(query["app_id"]) if "app_id" in query else None
    limit = _page_size(query.get("limit"))
    after_text = query.get("after")
    after = None
    if after_text:
        after_app, sep, after_phone = after_text.partition(":")
        if not sep:
            raise ApiError(
                422,
                "invalid after",
                fields=[{"field": "after", "message": "use the 'next' value of the previous page"}],
            )
        after = (after_app, after_phone)
    page = await _stored(ctx, ctx.store.list_numbers(app_id=app_id, after=after, limit=limit))
    numbers = [
        {
            "app_id": number.app_id,
            "phone_number": number.phone,
            "origin": number.origin,
            "tracked_until": number.expires_at,
            "next_poll_at": number.next_due,
            "last_polled_at": number.last_polled_at,
        }
        for number in page
    ]
    last = page[-1] if len(page) == limit else None
    return JSONResponse(
        {"numbers": numbers, "next": f"{last.app_id}:{last.phone}" if last else None}
    )


async def add_conversions(request: Request) -> Response:
    """``POST /v1/conversions``: one conversion or a list, queued durably for the reporter."""
    ctx: ListenerContext = request.app.state.ctx
    body = await _json_body(ctx, request)
    items = (
        _validate(_CONVERSION_LIST, body)
        if isinstance(body, list)
        else [_validate(_CONVERSION, body)]
    )
    if not 1 <= len(items) <= MAX_CONVERSIONS:
        raise ApiError(
            422,
            "invalid body",
            fields=[{"field": "body", "message": f"1..{MAX_CONVERSIONS} conversions"}],
        )
    queued = []
    for index, item in enumerate(items):
        app_id = ctx.app_id(item.app_id)
        if app_id not in ctx.conversion_apps:
            raise ApiError(
                422,
                "invalid body",
                fields=[
                    {
                        "field": f"{index}.app_id",
                        "message": f"conversions are disabled for app {app_id}",
                    }
                ],
            )
        queued.append((app_id, item.serial_no, item.conversion_time))
    await _stored(ctx, ctx.store.enqueue_conversions(queued))
    return JSONResponse({"queued": len(queued)}, status_code=202)
