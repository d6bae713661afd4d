"""The local API under ``/v1``: track numbers for per-number polling, queue conversions.

Every route needs the bearer token (compared in constant time), a JSON content type for bodies,
and a body that validates; anything else is a 4xx with a field-level message and changes nothing.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tcsms_poller.numbers_ascii import MAX_UNIX_TIME, parse_ascii_int, shorten
from tcsms_poller.server.bodies import read_json
from tcsms_poller.server.context import ListenerContext
from tcsms_poller.server.errors import ApiError, FieldProblem
from tcsms_poller.settings_types import E164, Duration, is_e164
from tcsms_poller.state import StateError

__all__ = [
    "add_conversions",
    "decode_cursor",
    "encode_cursor",
    "list_numbers",
    "track_number",
    "untrack_number",
]

MAX_TRACK_FOR = 30 * 86_400.0
MAX_CONVERSIONS = 1000
MAX_NUMBERS = 1000
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_CURSOR = 200  # characters of an ``after`` cursor: an app id and a number fit in far fewer
MAX_FIELD_PROBLEMS = 20
MAX_ECHO = 200  # characters of a problem's message: it may quote the (huge) value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackRequest(_Body):
    """``POST /v1/numbers``."""

    phone_number: E164
    app_id: str | None = None
    track_for: Duration = Field(default=7 * 86_400.0, le=MAX_TRACK_FOR)


def _unix_time(value: object) -> object:
    """A UNIX time as an int or a string of ASCII digits, nothing else (no bool, no float)."""
    if value is None:
        return None
    parsed = parse_ascii_int(value, maximum=MAX_UNIX_TIME)
    if parsed is None:
        raise ValueError(f"expected a UNIX time in seconds, 0..{MAX_UNIX_TIME}")
    return parsed


class ConversionRequest(_Body):
    """One item of ``POST /v1/conversions``."""

    serial_no: str = Field(min_length=1, max_length=128)
    app_id: str | None = None
    conversion_time: Annotated[int | None, BeforeValidator(_unix_time)] = None


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


def _problems(error: ValidationError) -> list[FieldProblem]:
    """Pydantic's errors as field problems, in words that name no class of ours."""
    problems: list[FieldProblem] = []
    for problem in error.errors(include_url=False, include_context=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = "expected a JSON object"
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        problems.append({"field": field[:MAX_ECHO], "message": shorten(message, MAX_ECHO)})
    return problems


def _invalid(problems: list[FieldProblem]) -> ApiError:
    """422 naming at most ``MAX_FIELD_PROBLEMS`` problems, and how many more there were."""
    shown = problems[:MAX_FIELD_PROBLEMS]
    if len(problems) > len(shown):
        more = len(problems) - len(shown)
        shown.append({"field": "body", "message": f"{more} more problems not shown"})
    return ApiError(422, "invalid body", fields=shown)


def _validate(adapter: TypeAdapter[T], body: Any) -> T:
    try:
        return adapter.validate_python(body)
    except ValidationError as error:
        raise _invalid(_problems(error)) from None


def _validate_items(adapter: TypeAdapter[T], body: Any, *, limit: int, noun: str) -> list[T]:
    """One object or a list of 1..``limit``; the count is checked before any item is looked at,
    so a huge list costs one ``len`` and a small error answer, never a validation per item."""
    if not isinstance(body, list):
        return [_validate(adapter, body)]
    if not 1 <= len(body) <= limit:
        raise _invalid([{"field": "body", "message": f"1..{limit} {noun}, got {len(body)}"}])
    items: list[T] = []
    problems: list[FieldProblem] = []
    for index, item in enumerate(body):
        try:
            items.append(adapter.validate_python(item))
        except ValidationError as error:
            problems += [
                {**problem, "field": f"{index}.{problem['field']}".removesuffix(".body")}
                for problem in _problems(error)
            ]
    if problems:
        raise _invalid(problems)
    return items


async def _stored(ctx: ListenerContext, work: Awaitable[T]) -> T:
    try:
        return await work
    except StateError as error:
        ctx.health.failed(str(error))  # it names the state database
        raise ApiError(503, "state database unavailable, try again") from None


_TRACK = TypeAdapter(TrackRequest)
_CONVERSION = TypeAdapter(ConversionRequest)


async def track_number(request: Request) -> Response:
    """``POST /v1/numbers``: track one number or a list for ``track_for`` (extends, never
    shortens); 201 when any was newly tracked."""
    ctx: ListenerContext = request.app.state.ctx
    body = await _json_body(ctx, request)
    items = _validate_items(_TRACK, body, limit=MAX_NUMBERS, noun="numbers")
    tracked = [(ctx.app_id(item.app_id), item) for item in items]
    answers = []
    for app_id, item in tracked:
        created = await _stored(
            ctx, ctx.store.track_number(app_id, item.phone_number, track_for=item.track_for)
        )
        answers.append(
            {
                "app_id": app_id,
                "phone_number": item.phone_number,
                "tracked_until": round(ctx.clock() + item.track_for),
                "created": created,
            }
        )
    status = 201 if any(answer["created"] for answer in answers) else 200
    return JSONResponse(answers if isinstance(body, list) else answers[0], status_code=status)


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
        return DEFAULT_PAGE
    limit = parse_ascii_int(text, minimum=1, maximum=MAX_PAGE)
    if limit is None:
        raise ApiError(
            422, "invalid limit", fields=[{"field": "limit", "message": f"1..{MAX_PAGE}"}]
        )
    return limit


def encode_cursor(app_id: str, phone: str) -> str:
    """The opaque, URL-safe ``next`` of a page: base64url (unpadded) of ``[app_id, phone]``."""
    raw = json.dumps([app_id, phone], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> tuple[str, str]:
    """The position ``encode_cursor`` wrote; a 422 for anything else."""
    invalid = ApiError(
        422,
        "invalid after",
        fields=[{"field": "after", "message": "use the 'next' value of the previous page"}],
    )
    if len(text) > MAX_CURSOR or not text.isascii():
        raise invalid
    try:
        decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise invalid from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not all(isinstance(part, str) for part in decoded)
        or not is_e164(decoded[1])
    ):
        raise invalid
    return decoded[0], decoded[1]


def _seconds(moment: float | None) -> int | None:
    return None if moment is None else round(moment)


async def list_numbers(request: Request) -> Response:
    """``GET /v1/numbers[?app_id=&limit=&after=]``: a page in (app, number) order."""
    ctx: ListenerContext = request.app.state.ctx
    _authorize(ctx, request)
    query = request.query_params
    app_id = ctx.app_id(query["app_id"]) if "app_id" in query else None
    limit = _page_size(query.get("limit"))
    after_text = query.get("after")
    after = decode_cursor(after_text) if after_text else None
    page = await _stored(ctx, ctx.store.list_numbers(app_id=app_id, after=after, limit=limit))
    numbers = [
        {
            "app_id": number.app_id,
            "phone_number": number.phone,
            "origin": number.origin,
            "tracked_until": _seconds(number.expires_at),
            "next_poll_at": _seconds(number.next_due),
            "last_polled_at": _seconds(number.last_polled_at),
        }
        for number in page
    ]
    last = page[-1] if len(page) == limit else None
    return JSONResponse(
        {"numbers": numbers, "next": encode_cursor(last.app_id, last.phone) if last else None}
    )


async def add_conversions(request: Request) -> Response:
    """``POST /v1/conversions``: one conversion or a list, queued durably for the reporter."""
    ctx: ListenerContext = request.app.state.ctx
    body = await _json_body(ctx, request)
    items = _validate_items(_CONVERSION, body, limit=MAX_CONVERSIONS, noun="conversions")
    queued = []
    for index, item in enumerate(items):
        app_id = ctx.app_id(item.app_id)
        if app_id not in ctx.conversion_apps:
            field = f"{index}.app_id" if isinstance(body, list) else "app_id"
            raise _invalid(
                [{"field": field, "message": f"conversions are disabled for app {app_id}"}]
            )
        queued.append((app_id, item.serial_no, item.conversion_time))
    await _stored(ctx, ctx.store.enqueue_conversions(queued))
    return JSONResponse({"queued": len(queued)}, status_code=202)
