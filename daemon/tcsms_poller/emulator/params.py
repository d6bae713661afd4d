"""Reading an action's parameters the way Tencent checks them, with Tencent's error codes.

A missing required parameter is ``MissingParameter``, a value of the wrong JSON type is
``InvalidParameter``, a parameter the action does not have is ``UnknownParameter`` (a typo in a
client must not pass silently). ``null`` counts as absent, as the official SDK never sends it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tcsms_poller.emulator.answers import ApiError

__all__ = ["Params", "parse_body"]


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body."""
    try:
        document = json.loads(body)
    except ValueError:  # includes bad UTF-8
        raise ApiError("FailedOperation.JsonParseFail", "The request body is not JSON.") from None
    if not isinstance(document, dict):
        raise ApiError("FailedOperation.JsonParseFail", "The request body is not a JSON object.")
    return document


class Params:
    """One request's parameters; ``known`` are the names the action accepts."""

    def __init__(self, values: Mapping[str, Any], known: frozenset[str]) -> None:
        unknown = sorted(set(values) - known)
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        self._values = values

    def _get(self, name: str, required: bool) -> Any:
        value = self._values.get(name)
        if value is None and required:
            raise ApiError(
                "MissingParameter", f"The request is missing a required parameter `{name}`."
            )
        return value

    def string(self, name: str) -> str:
        """A required String parameter."""
        value = self._get(name, required=True)
        if not isinstance(value, str):
            raise ApiError("InvalidParameter", f"The parameter `{name}` must be a String.")
        return value

    def optional(self, name: str, *, required: bool = False) -> Any:
        """A parameter of any JSON type, None when absent."""
        return self._get(name, required)

    def optional_string(self, name: str) -> str | None:
        """A String parameter that may be absent."""
        value = self._get(name, required=False)
        if value is not None and not isinstance(value, str):
            raise ApiError("InvalidParameter", f"The parameter `{name}` must be a String.")
        return value

    def integer(self, name: str) -> int:
        """A required Integer parameter."""
        value = self.optional_integer(name, required=True)
        assert value is not None
        return value

    def optional_integer(self, name: str, *, required: bool = False) -> int | None:
        """An Integer parameter that may be absent."""
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError("InvalidParameter", f"The parameter `{name}` must be an Integer.")
        return value
