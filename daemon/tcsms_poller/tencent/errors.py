"""Failures talking to Tencent, split by what the caller should do about them.

    TencentError                     code, message, request_id, action
     +-- TransientError              retry with backoff; unhealthy once the retries ran out
     |    +-- TransportError         connection refused/reset, timeouts
     |    +-- MalformedResponseError not JSON, no ``Response``, wrong types, truncated, HTTP 5xx
     |    +-- RateLimitedError       ``RequestLimitExceeded*`` (other clients share the account)
     |    +-- ServerError            ``InternalError*``, ``ResourceUnavailable*``, ``Service...``
     +-- PermanentError              stop the affected worker; it reports unhealthy, retries slowly
          +-- AuthError              ``AuthFailure*``, ``UnauthorizedOperation*``
          |    +-- ClockSkewError    ``AuthFailure.SignatureExpire``: our clock is off
          +-- RequestError           ``InvalidParameter*``, ``MissingParameter`` and any other code

A transient error the client's retries absorbed is invisible to the worker; one that outlasted
them fails that cycle, and the worker reports unhealthy until a later cycle succeeds (the next
one comes at its normal interval, not slowly).

Unknown codes are permanent: retrying them fast could hammer an account that is misconfigured,
while the worker's slow retry still recovers from a code that turns out to be passing.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ClockSkewError",
    "MalformedResponseError",
    "PermanentError",
    "RateLimitedError",
    "RequestError",
    "ServerError",
    "TencentError",
    "TransientError",
    "TransportError",
    "error_from_code",
]


class TencentError(Exception):
    """A failed call to the Tencent API."""

    def __init__(self, code: str, message: str, *, action: str = "", request_id: str = "") -> None:
        self.code = code
        self.message = message
        self.action = action
        self.request_id = request_id
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line fit for a log or a health report."""
        where = f"{self.action}: " if self.action else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{self.code}: {self.message}{rid}"

    @property
    def is_transient(self) -> bool:
        """Whether retrying the same request may succeed."""
        return isinstance(self, TransientError)


class TransientError(TencentError):
    """Retrying may succeed."""


class TransportError(TransientError):
    """The request or its answer never fully crossed the network."""


class MalformedResponseError(TransientError):
    """The server answered something that is not a well-formed API response."""


class RateLimitedError(TransientError):
    """Tencent refused the request for exceeding a request-rate limit."""


class ServerError(TransientError):
    """Tencent reported an internal or availability problem."""


class PermanentError(TencentError):
    """Retrying the same request will fail the same way until someone changes something."""


class AuthError(PermanentError):
    """Credentials, permissions or the account state are wrong."""


class ClockSkewError(AuthError):
    """The request's timestamp was rejected: this machine's clock is off."""

    def describe(self) -> str:
        return (
            f"{super().describe()} -- the system clock differs from Tencent's by more than "
            "5 minutes; fix the clock (NTP)"
        )


class RequestError(PermanentError):
    """The request itself is invalid (parameters, app id, unsupported operation)."""


_TRANSIENT_PREFIXES: tuple[tuple[str, type[TencentError]], ...] = (
    ("RequestLimitExceeded", RateLimitedError),
    ("InternalError", ServerError),
    ("ResourceUnavailable", ServerError),
    ("ServiceUnavailable", ServerError),
)
_PERMANENT_PREFIXES: tuple[tuple[str, type[TencentError]], ...] = (
    ("AuthFailure.SignatureExpire", ClockSkewError),
    ("AuthFailure", AuthError),
    ("UnauthorizedOperation", AuthError),
)


def error_from_code(
    code: str, message: str, *, action: str = "", request_id: str = ""
) -> TencentError:
    """The error for an API answer's ``Response.Error``."""
    for prefix, error_type in _TRANSIENT_PREFIXES + _PERMANENT_PREFIXES:
        if code.startswith(prefix):
            return error_type(code, message, action=action, request_id=request_id)
    return RequestError(code, message, action=action, request_id=request_id)
