"""Reading request bodies within ``max_body`` and parsing them as JSON.

The limit is enforced while reading, not from ``Content-Length`` alone, since a chunked body has
none; a body over the limit is refused (413) before it is parsed or stored.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from tcsms_poller.numbers_ascii import parse_ascii_int
from tcsms_poller.server.errors import ApiError

__all__ = ["read_json"]


async def _read_limited(request: Request, max_body: int, *, callback: bool) -> bytes:
    declared = parse_ascii_int(request.headers.get("content-length", ""))
    if declared is not None and declared > max_body:
        raise ApiError(413, f"body larger than {max_body} bytes", callback=callback)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise ApiError(413, f"body larger than {max_body} bytes", callback=callback)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_body: int, *, callback: bool = False) -> Any:
    """The body parsed as JSON; 413 when too large, 400 when not JSON."""
    raw = await _read_limited(request, max_body, callback=callback)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"body is not valid JSON: {error.msg}", callback=callback) from None
