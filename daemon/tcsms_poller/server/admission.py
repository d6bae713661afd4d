"""An ASGI middleware bounding requests in progress, with a budget per kind of route.

Connections are the server's to bound (``tcsms_poller.asgi``); this counts requests whose
headers are complete and whose answer is not yet sent. Tencent's pushes and the rest (the
``/v1`` API, ``/metrics``) each get ``limit`` requests at once, so a flood of one cannot starve
the other; ``/healthz`` is never turned away (it reads memory only), so an orchestrator does
not kill a daemon for being busy. Beyond its budget a request gets 503 with ``Retry-After``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Admission"]

_UNLIMITED = frozenset({"/healthz"})
_TURNED_AWAY = JSONResponse(
    {"error": "too many requests in progress"}, status_code=503, headers={"Retry-After": "1"}
)


def _budget(path: str) -> str | None:
    """The budget a request draws on; None for routes never turned away."""
    if path in _UNLIMITED:
        return None
    return "callback" if path.startswith("/callback/") else "other"


class Admission:
    """Answers 503 to a request beyond ``limit`` in progress on its budget."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self._app = app
        self._limit = limit
        self._in_progress = {"callback": 0, "other": 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget = _budget(scope["path"]) if scope["type"] == "http" else None
        if budget is None:
            await self._app(scope, receive, send)
            return
        if self._in_progress[budget] >= self._limit:
            await _TURNED_AWAY(scope, receive, send)
            return
        self._in_progress[budget] += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._in_progress[budget] -= 1
