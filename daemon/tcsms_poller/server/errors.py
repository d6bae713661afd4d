"""Every error the listener answers is JSON, with a status and a message a client can act on.

Tencent's callbacks expect ``{"result": 1, "errmsg": ...}``; our own API answers
``{"error": ..., "fields": [...]}``. Starlette's own 404/405 pages are replaced alike, so no
route ever answers HTML or plain text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["ApiError", "FieldProblem", "api_error_response", "http_exception_response"]

FieldProblem = Mapping[str, str]


class ApiError(Exception):
    """Answer ``status`` with ``message`` (and per-field problems) and change nothing."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        fields: Sequence[FieldProblem] = (),
        callback: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)
        self.callback = callback
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body for this error."""
        if self.callback:
            return {"result": 1, "errmsg": self.message}
        body: dict[str, Any] = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


async def api_error_response(request: Request, error: Exception) -> Response:
    """Starlette exception handler for ``ApiError``."""
    assert isinstance(error, ApiError)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def http_exception_response(request: Request, error: Exception) -> Response:
    """Starlette's 404/405 as JSON."""
    assert isinstance(error, HTTPException)
    return JSONResponse(
        {"error": error.detail}, status_code=error.status_code, headers=error.headers
    )
