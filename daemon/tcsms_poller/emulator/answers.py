"""The shape of every API answer: ``{"Response": {..., "RequestId": "<uuid>"}}``.

Tencent answers errors with HTTP 200 and ``Response.Error``; the official SDK reads the error
only when the answer's ``Content-Type`` is exactly ``application/json``, so every answer here is
rendered through ``json_answer``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

__all__ = ["ApiError", "error_body", "json_answer", "new_request_id", "success_body"]

JSON = "application/json"


class ApiError(Exception):
    """A request Tencent would refuse: the error code and message of ``Response.Error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def new_request_id() -> str:
    """A fresh ``RequestId``, a UUID like Tencent's."""
    return str(uuid.uuid4())


def success_body(payload: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    """The document of a successful answer carrying ``payload``."""
    return {"Response": {**payload, "RequestId": request_id}}


def error_body(error: ApiError, request_id: str) -> dict[str, Any]:
    """The document of a refused request."""
    return {
        "Response": {
            "Error": {"Code": error.code, "Message": error.message},
            "RequestId": request_id,
        }
    }


def json_answer(document: Mapping[str, Any] | bytes, status: int = 200) -> Response:
    """An HTTP answer with Tencent's exact content type (no charset parameter)."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode("utf-8")
    return Response(body, status_code=status, media_type=JSON)
