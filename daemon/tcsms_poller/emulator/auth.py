"""TC3-HMAC-SHA256 verification, as Tencent's gateway does it.

The signature is recomputed with ``tencent/signing.py`` (the same code our client signs with; the
official SDK, in tests, keeps both honest) over exactly the headers the client declares in
``SignedHeaders``, which must include ``content-type`` and ``host``. The credential date must be
the UTC date of ``X-TC-Timestamp``, and the timestamp within ``max_skew`` of the emulator's clock.
Checks run in the order that gives the most useful error: a skewed clock is reported as
``SignatureExpire`` even when the key is also wrong.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from tcsms_poller.emulator.answers import ApiError
from tcsms_poller.tencent import SERVICE
from tcsms_poller.tencent.signing import (
    canonical_request,
    credential_date,
    parse_authorization,
    sign,
    string_to_sign,
)

__all__ = ["REQUIRED_SIGNED_HEADERS", "verify_request"]

REQUIRED_SIGNED_HEADERS = frozenset({"content-type", "host"})
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"  # X-TC-Content-SHA256 value: the SDK may skip the body hash


def _timestamp(headers: Mapping[str, str]) -> int:
    text = headers.get("x-tc-timestamp")
    if text is None:
        raise ApiError("MissingParameter", "The request is missing the X-TC-Timestamp header.")
    if not text.strip().isdigit():
        raise ApiError("InvalidParameter", f"X-TC-Timestamp {text!r} is not a UNIX time.")
    return int(text)


def verify_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    now: float,
    max_skew: float = 300.0,
) -> str:
    """Check a request's signature; return its SecretId.

    ``headers`` maps lower-case names to values; ``secrets`` maps SecretIds to SecretKeys.

    Raises:
        ApiError: ``MissingParameter``, ``AuthFailure.InvalidAuthorization``,
            ``AuthFailure.SignatureExpire``, ``AuthFailure.SecretIdNotFound`` or
            ``AuthFailure.SignatureFailure``.
    """
    header = headers.get("authorization")
    if not header:
        raise ApiError("MissingParameter", "The request is missing the Authorization header.")
    timestamp = _timestamp(headers)
    try:
        authorization = parse_authorization(header)
    except ValueError as error:
        raise ApiError("AuthFailure.InvalidAuthorization", f"Authorization: {error}.") from None
    signed = frozenset(authorization.signed_headers)
    if authorization.service != SERVICE:
        raise ApiError(
            "AuthFailure.InvalidAuthorization",
            f"The credential scope names service {authorization.service!r}, not {SERVICE!r}.",
        )
    if not signed >= REQUIRED_SIGNED_HEADERS:
        raise ApiError(
            "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host."
        )
    absent = sorted(name for name in signed if name not in headers)
    if absent:
        raise ApiError(
            "AuthFailure.InvalidAuthorization",
            f"Signed header(s) {', '.join(absent)} are not in the request.",
        )
    if abs(int(now) - timestamp) > max_skew:  # whole seconds, as the client's timestamp is
        raise ApiError(
            "AuthFailure.SignatureExpire",
            f"X-TC-Timestamp {timestamp} is more than {max_skew:g} s from the server time "
            f"{int(now)}; check the client's clock.",
        )
    secret_key = secrets.get(authorization.secret_id)
    if secret_key is None:
        raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    date = credential_date(timestamp)
    if authorization.date != date:
        raise ApiError(
            "AuthFailure.SignatureFailure",
            f"The credential date {authorization.date} is not the UTC date {date} of "
            "X-TC-Timestamp.",
        )
    payload = body
    if headers.get("x-tc-content-sha256", "").strip() == UNSIGNED_PAYLOAD:
        payload = UNSIGNED_PAYLOAD.encode("ascii")
    canonical = canonical_request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        signed_headers=authorization.signed_headers,
        body=payload,
    )
    expected = sign(
        secret_key=secret_key,
        date=date,
        service=SERVICE,
        to_sign=string_to_sign(timestamp=timestamp, service=SERVICE, canonical=canonical),
    )
    if not hmac.compare_digest(expected, authorization.signature):
        raise ApiError(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated; check the signature.",
        )
    return authorization.secret_id
