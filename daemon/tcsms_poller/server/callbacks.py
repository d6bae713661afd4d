"""Tencent's push callbacks: sending statuses and replies, into the same intake as pulls.

The secret in the path is the only authentication Tencent's pushes support, so it is compared in
constant time and a wrong one is indistinguishable from a missing route (404). A push is
answered ``OK`` only once its records are committed: Tencent does not push a receipt again after
``OK``, so answering early could lose it. A push that fails to commit gets a 503 and Tencent
retries it; the pulled copy is deduplicated against it either way.

Items are taken one by one (``tencent/push.py``): the good ones are committed, odd ones are
quarantined beside rejected pulled items in the same transaction, receipts without a final status
are counted as pending, and the push is answered ``OK``. Only a body that is not a push at all is
refused (400), which changes nothing.
"""

from __future__ import annotations

import hmac
from typing import Any, NamedTuple

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tcsms_poller.numbers_ascii import shorten
from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.server.bodies import read_json
from tcsms_poller.server.context import ListenerContext
from tcsms_poller.server.errors import ApiError
from tcsms_poller.state import StateError
from tcsms_poller.tencent.models import RejectedItem
from tcsms_poller.tencent.push import PushError, parse_reply_push, parse_status_push

__all__ = ["SOURCE", "receive_callback"]

log = structlog.get_logger("tcsms_poller.server")

log = structlog.get_logger("tcsms_poller.server")

SOURCE = "callback"
OK = {"result": 0, "errmsg": "OK"}


class _Push(NamedTuple):
    """One push, parsed: its records, its odd items, and how many receipts are not final."""

    records: list[Record]
    rejected: tuple[RejectedItem, ...]
    pending: int


def _check_secret(ctx: ListenerContext, given: str) -> None:
    expected = ctx.settings.callback_secret.reveal().encode()
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        raise ApiError(404, "Not Found")


def _parse(ctx: ListenerContext, kind: str, body: Any, app_id: str) -> _Push:
    received_at = format_received_at(ctx.clock())
    try:
        if kind == "status":
            statuses = parse_status_push(body)
            records = [
                send_status_record(
                    app_id, status, source=SOURCE, received_at=received_at, description_text=text
                )
                for status, text in statuses.items
            ]
            return _Push(records, statuses.rejected, statuses.pending)
        replies = parse_reply_push(body)
    except PushError as error:
        raise ApiError(400, str(error), callback=True) from None
    records = [
        reply_record(app_id, reply, source=SOURCE, received_at=received_at)
        for reply in replies.items
    ]
    return _Push(records, replies.rejected, replies.pending)


async def receive_callback(request: Request) -> Response:
    """``POST /callback/<secret>/{status,reply}``."""
    ctx: ListenerContext = request.app.state.ctx
    _check_secret(ctx, request.path_params["secret"])
    kind = request.path_params["kind"]
    if kind not in ("status", "reply"):
        raise ApiError(404, "Not Found")
    try:
        app_id = ctx.app_id(request.query_params.get("app_id"), callback=True)
        body = await read_json(request, ctx.settings.max_body, callback=True)
        push = _parse(ctx, kind, body, app_id)
    except ApiError as error:
        # Tencent does not retry a 4xx: the push is lost unless someone sees this line.
        log.warning(
            "callback.rejected",
            kind=kind,
            status=error.status,
            reason=error.message,
            app_id=shorten(request.query_params.get("app_id", ""), 40) or None,
        )
        raise
    try:
        await ctx.intake.commit(push.records, source=SOURCE, rejected=push.rejected)
    except StateError as error:
        ctx.health.failed(str(error))  # it names the state database
        raise ApiError(503, "not stored, try again", callback=True) from None
    if push.pending:
        ctx.metrics.receipts_pending.labels(SOURCE).inc(push.pending)
    ctx.health.succeeded()
    return JSONResponse(OK)
