"""An ASGI middleware counting the listener's requests by route template and status.

The label is the route's template (``/callback/{secret}/{kind}``), never the raw path: the
callback path holds the callback secret, and raw paths would grow the series without bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UNMATCHED", "RequestCounter", "route_template"]

UNMATCHED = "unmatched"


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves ``scope`` (a wrong method still names its path)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL and isinstance(route, Route):
            return route.path
        if match is Match.PARTIAL and partial is None and isinstance(route, Route):
            partial = route.path
    return partial or UNMATCHED


class RequestCounter:
    """Counts each HTTP request once its answer has started, by route template and status."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], counter: Counter) -> None:
        self._app = app
        self._routes = routes
        self._counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, recording_send)
        finally:
            if status:
                route = route_template(self._routes, scope)
                self._counter.labels(route=route, status=str(status)).inc()
