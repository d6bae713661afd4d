"""Failures talking to Tencent, split by what the caller should do about them.

    TencentError                     code, message, request_id, action
     +-- TransientError              retry with backoff; unhealthy once the retries ran out
     |    +-- TransportError         connection refused/reset, timeouts
     |    +-- MalformedResponseError not JSON, no ``Response``, wrong types, truncated, HTTP 5xx
     |    +-- RateLimitedError       ``RequestLimitExceeded*`` (other clients share the account)
     |    +-- ServerError            ``InternalError*``, ``ResourceUnavailable*``, ``Service...``
     +-- PermanentError              stop the affected worker; it reports unhealthy, retries slowly
          +-- AuthError              ``AuthFailure*``, ``UnauthorizedOperation*``
          |    +-- ClockSkewError    ``AuthFailure.SignatureExpire``, ``InternalError.
          |                          RequestTimeException``: our clock is off
          +-- RequestError           ``InvalidParameter*``, ``MissingParameter``, the request-format
                                     ``InternalError.*`` codes and any other code

``answer_lost`` marks a failure that came after the request was sent (a read timeout, a broken
or truncated answer): Tencent may have acted on it, and for a queue action the records it handed
out in that answer are gone.

A transient error the client's retries absorbed is invisible to the worker; one that outlasted
them fails that cycle, and the worker reports unhealthy until a later cycle succeeds (the next
one comes at its normal interval, not slowly).

Unknown codes are permanent: retrying them fast could hammer an account that is misconfigured,
while the worker's slow retry still recovers from a code that turns out to be passing.

``means_not_activated`` names the refusals a queue action gives an account on which Tencent has
not activated it (the code is undocumented: the permission and unsupported-operation family,
less the codes documented for another cause).
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
    "means_not_activated",
]


class TencentError(Exception):
    """A failed call to the Tencent API."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        action: str = "",
        request_id: str = "",
        answer_lost: bool = False,
    ) -> None:
        self.code = code
        self.message = message
        self.action = action
        self.request_id = request_id
        self.answer_lost = answer_lost  # sent, but its answer never arrived whole
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

    @property
    def log_fields(self) -> dict[str, str | None]:
        """``code`` and ``request_id`` (None when Tencent gave none) for a log line's key/values."""
        return {"code": self.code, "request_id": self.request_id or None}


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
            f"{super().describe()} -- the system clock differs from Tencent's (by more than "
            "5 minutes for a signature, 10 for the SMS backend); fix the clock (NTP)"
        )


class RequestError(PermanentError):
    """The request itself is invalid (parameters, app id, unsupported operation)."""


# Codes whose class differs from their prefix's: the SMS backend's clock check, and the
# request-format errors, which five fast retries cannot fix.
_EXACT: dict[str, type[TencentError]] = {
    "InternalError.RequestTimeException": ClockSkewError,
    "InternalError.SigFieldMissing": RequestError,
    "InternalError.SigVerificationFail": RequestError,
    "InternalError.RestApiInterfaceNotExist": RequestError,
    "InternalError.JsonParseFail": RequestError,
}
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
    exact = _EXACT.get(code)
    if exact is not None:
        return exact(code, message, action=action, request_id=request_id)
    for prefix, error_type in _TRANSIENT_PREFIXES + _PERMANENT_PREFIXES:
        if code.startswith(prefix):
            return error_type(code, message, action=action, request_id=request_id)
    return RequestError(code, message, action=action, request_id=request_id)


# Refusals documented for a cause other than activation: they concern every action and need
# their own fix, so they keep the worker unhealthy.
_OTHER_CAUSES = frozenset(
    {
        "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
        "UnauthorizedOperation.RequestIpNotInWhitelist",
        "UnauthorizedOperation.SdkAppIdIsDisabled",
        "UnauthorizedOperation.ServiceSuspendDueToArrears",
    }
)


def means_not_activated(error: TencentError) -> bool:
    """Whether a queue action's refusal plausibly says Tencent has not activated it here."""
    code = error.code
    if code in _OTHER_CAUSES:
        return False
    return code.startswith(("UnauthorizedOperation", "UnsupportedOperation"))
