"""The listener's Starlette application: routes of SPEC §7 and the limits around them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tcsms_poller.server.admission import Admission
from tcsms_poller.server.api import add_conversions, list_numbers, track_number, untrack_number
from tcsms_poller.server.callbacks import receive_callback
from tcsms_poller.server.context import ListenerContext
from tcsms_poller.server.deadline import Deadline
from tcsms_poller.server.errors import (
    ApiError,
    api_error_response,
    http_exception_response,
)
from tcsms_poller.server.messages import get_message, track_messages
from tcsms_poller.server.observed import RequestCounter
from tcsms_poller.server.probes import healthz, metrics

__all__ = ["build_app", "build_routes"]


async def _numbers(request: Request) -> Response:
    """One route for both methods, so a 405 on ``/v1/numbers`` lists both in ``Allow``."""
    return await (track_number if request.method == "POST" else list_numbers)(request)


def build_routes() -> list[Route]:
    """Every route the listener serves (``docs/api.md`` documents each; a test holds them equal)."""
    return [
        Route("/callback/{secret}/{kind}", receive_callback, methods=["POST"]),
        Route("/v1/numbers", _numbers, methods=["GET", "POST"]),
        Route("/v1/numbers/{phone}", untrack_number, methods=["DELETE"]),
        Route("/v1/conversions", add_conversions, methods=["POST"]),
        Route("/v1/messages", track_messages, methods=["POST"]),
        Route("/v1/messages/{serial_no}", get_message, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def build_app(ctx: ListenerContext) -> ASGIApp:
    """The ASGI app for ``ctx``, with its limits on requests in progress and on their time.

    Limits on connections are the server's (``serving``).
    """
    routes = build_routes()
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error_response,
            HTTPException: http_exception_response,
        },
    )
    app.state.ctx = ctx
    timed = Deadline(app, seconds=ctx.settings.request_timeout)
    admitted = Admission(timed, limit=ctx.settings.max_concurrency)
    return RequestCounter(admitted, routes=routes, counter=ctx.metrics.http_requests)
