"""An ASGI middleware bounding each request's time, body upload included.

uvicorn bounds connections and keep-alive but not how long one request may take; a client that
trickles its body would otherwise hold a slot (and a worker's attention) indefinitely.
"""

from __future__ import annotations

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CALLBACK_PREFIX", "Deadline"]

CALLBACK_PREFIX = "/callback/"


class Deadline:
    """Answers 503 when a request takes longer than ``seconds``, if nothing was sent yet.

    A callback route answers in Tencent's format, so the pusher reads it as a failure to retry.
    """

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        with anyio.move_on_after(self._seconds) as scope_timer:
            await self._app(scope, receive, tracking_send)
        if scope_timer.cancelled_caught and not started:
            message = "request took too long"
            # Tencent's pushes read {"result", "errmsg"}; our own API answers {"error"}.
            answer = (
                {"result": 1, "errmsg": message}
                if scope["path"].startswith(CALLBACK_PREFIX)
                else {"error": message}
            )
            await JSONResponse(answer, status_code=503)(scope, receive, send)
