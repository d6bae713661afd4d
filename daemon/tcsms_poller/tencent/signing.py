"""TC3-HMAC-SHA256 request signing, shared by our client and the emulator's verifier.

One implementation serves both sides so that the emulator cannot drift from the client silently;
the official SDK, used in tests, is the independent judge of both.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

__all__ = [
    "ALGORITHM",
    "Authorization",
    "TC3Auth",
    "build_authorization",
    "canonical_request",
    "credential_date",
    "parse_authorization",
    "sign",
    "string_to_sign",
]

ALGORITHM = "TC3-HMAC-SHA256"
DEFAULT_SIGNED_HEADERS = ("content-type", "host")


def credential_date(timestamp: int) -> str:
    """The credential scope's date: the UTC date of the timestamp (never the local one)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """Build the canonical request over ``signed_headers`` (lower-case names, sorted).

    ``headers`` must map lower-case names to values; values are trimmed and lower-cased as in
    Tencent's documentation.
    """
    names = sorted(signed_headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in names)
    return "\n".join(
        (
            method.upper(),
            path,
            query,
            canonical_headers,
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        )
    )


def string_to_sign(*, timestamp: int, service: str, canonical: str) -> str:
    """The string to sign for a canonical request made at ``timestamp``."""
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign(*, secret_key: str, date: str, service: str, to_sign: str) -> str:
    """Hex signature of ``to_sign`` with the key derived from ``secret_key``, date and service."""
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    k_signing = _hmac(k_service, "tc3_request")
    return hmac.new(k_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of an ``Authorization: TC3-HMAC-SHA256 ...`` header."""

    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    def render(self) -> str:
        """The header value, exactly as the official SDK spells it."""
        return (
            f"{ALGORITHM} Credential={self.secret_id}/{self.date}/{self.service}/tc3_request, "
            f"SignedHeaders={';'.join(self.signed_headers)}, Signature={self.signature}"
        )


def build_authorization(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    timestamp: int,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
) -> Authorization:
    """Sign one request; ``headers`` maps lower-case names to values."""
    names = tuple(sorted(signed_headers))
    canonical = canonical_request(
        method=method, path=path, query=query, headers=headers, signed_headers=names, body=body
    )
    to_sign = string_to_sign(timestamp=timestamp, service=service, canonical=canonical)
    date = credential_date(timestamp)
    return Authorization(
        secret_id=secret_id,
        date=date,
        service=service,
        signed_headers=names,
        signature=sign(secret_key=secret_key, date=date, service=service, to_sign=to_sign),
    )


def parse_authorization(value: str) -> Authorization:
    """Split an ``Authorization`` header into its parts.

    Raises:
        ValueError: the header is not a well-formed TC3-HMAC-SHA256 authorization.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, field_value = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed authorization field {part.strip()!r}")
        fields[key] = field_value
    try:
        credential, signed, signature = (
            fields["Credential"],
            fields["SignedHeaders"],
            fields["Signature"],
        )
    except KeyError as missing:
        raise ValueError(f"authorization lacks {missing.args[0]}") from None
    scope = credential.split("/")
    if len(scope) != 4 or scope[3] != "tc3_request" or not all(scope):
        raise ValueError("credential must be SECRETID/DATE/SERVICE/tc3_request")
    names = tuple(name for name in signed.split(";") if name)
    if not names or not signature:
        raise ValueError("authorization lacks signed headers or a signature")
    return Authorization(
        secret_id=scope[0],
        date=scope[1],
        service=scope[2],
        signed_headers=names,
        signature=signature,
    )


class TC3Auth(httpx.Auth):
    """Signs each request at send time, so a retried request gets a fresh timestamp.

    ``clock`` is injectable because the clock-skew behaviour is part of what we test.
    """

    requires_request_body = True

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        service: str,
        token: str = "",
        signed_headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._service = service
        self._token = token
        self._signed_headers = tuple(signed_headers)
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = int(self._clock())
        request.headers["X-TC-Timestamp"] = str(timestamp)
        if self._token:
            request.headers["X-TC-Token"] = self._token
        headers = {name: request.headers.get(name, "") for name in self._signed_headers}
        authorization = build_authorization(
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            service=self._service,
            timestamp=timestamp,
            method=request.method,
            path=request.url.raw_path.decode("ascii").split("?", 1)[0] or "/",
            query=request.url.query.decode("ascii"),
            headers=headers,
            body=request.content,
            signed_headers=self._signed_headers,
        )
        request.headers["Authorization"] = authorization.render()
        yield request
