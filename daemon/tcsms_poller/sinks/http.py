"""POSTs records to a webhook as ``{"records": [...]}`` batches, signed with HMAC-SHA256.

Example::

    sinks:
      - type: http
        url: https://hooks.example.com/sms
        batch_size: 100
        timeout: 10s
        hmac_secret: ${HOOK_SECRET}      # X-Signature: sha256=<hex HMAC of "<timestamp>.<body>">
        headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
        max_retry_duration: 24h          # then the batch goes to the dead-letter file

Any 2xx acknowledges. 408, 429, 5xx, timeouts and transport errors retry with capped exponential
backoff and jitter, honouring ``Retry-After`` (seconds or an HTTP date, at most 10 minutes). Any
other status dead-letters the batch with the status and the start of the answer; so does a
redirect, which is never followed (configure the final URL: a redirected POST is easily turned
into a GET that drops the body).

With ``hmac_secret`` each request carries ``X-Signature-Timestamp: <unix seconds>`` and
``X-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``, over the exact body bytes.
A receiver written in Python can check both with ``verify_signature``, which also refuses
timestamps more than five minutes off (a captured request cannot be replayed later)::

    from tcsms_poller.sinks.http import verify_signature

    if not verify_signature(secret, request.headers["X-Signature-Timestamp"], body,
                            request.headers["X-Signature"]):
        return Response(status_code=401)

Every record appears once per batch but a batch may be posted again after a timeout or a crash:
receivers dedupe by the record ``id``.

The URL's user info (``user:password@``) and query values are secrets: ``check-config`` shows
them as ``***``, and logs and errors mask them. With ``secret_path: true`` so is the path (for
webhooks whose token is part of the path, like ``/hooks/<token>``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import httpx
from pydantic import AnyHttpUrl, Field, field_serializer, field_validator

from tcsms_poller import __version__
from tcsms_poller.masking import Masker
from tcsms_poller.settings_types import REDACTED, Duration, Secret, SecretValue
from tcsms_poller.sinks.base import (
    Ack,
    OutboxRecord,
    RejectedBatchError,
    RetryableSinkError,
    SinkContext,
    SinkSettings,
)
from tcsms_poller.sinks.retry_after import parse_retry_after

__all__ = ["HttpSettings", "HttpSink", "redact_url", "sign", "url_secrets", "verify_signature"]

_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
MAX_RETRY_AFTER = 600.0  # a downstream may slow us down, not park the sink for hours
_EXCERPT_BYTES = 512  # of an error answer: enough to see why, never a whole HTML page
_EXCERPT_CHARS = 200
_RETRYABLE = frozenset({408, 429})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


class HttpSettings(SinkSettings):
    """Where to post, how long to wait, how to sign."""

    type: Literal["http"] = "http"
    url: AnyHttpUrl
    secret_path: bool = False
    batch_size: int = Field(default=100, ge=1, le=10_000)
    timeout: Duration = 10.0
    hmac_secret: Secret | None = None
    headers: dict[str, Secret] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, headers: dict[str, SecretValue]) -> dict[str, SecretValue]:
        # A header that cannot be sent would fail every request, forever, like a transient error.
        for name, value in headers.items():
            if _HEADER_NAME.fullmatch(name) is None:
                raise ValueError(f"{name[:40]!r} is not an HTTP header name")
            if not value.reveal().isascii():
                raise ValueError(f"the value of {name} must be ASCII")
        return headers

    @field_serializer("url", when_used="json")
    def _redacted_url(self, url: AnyHttpUrl) -> str:
        return redact_url(str(url), path=self.secret_path)

    def hidden_secrets(self) -> list[SecretValue]:
        """The URL's secret parts, and the credentials of an ``Authorization`` header without
        their scheme: a downstream error or a library may quote a ``Bearer`` token alone. (Only
        those headers: the rest of another header's value, ``charset=utf-8``, is no secret, and
        masking it would garble every line that says it.)"""
        parts = url_secrets(str(self.url), path=self.secret_path)
        credentials = [
            value.reveal().partition(" ")[2].strip()
            for name, value in self.headers.items()
            if name.lower() in _CREDENTIAL_HEADERS
        ]
        return [SecretValue(part) for part in (*parts, *credentials) if part]


def redact_url(url: str, *, path: bool = False) -> str:
    """``url`` with its user info, query values (and with ``path``, its path) as ``***``."""
    parts = urlsplit(url)
    _, at, host = parts.netloc.rpartition("@")
    netloc = f"{REDACTED}@{host}" if at else host
    query = "&".join(
        f"{key}={REDACTED}" if sep else REDACTED
        for key, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    hidden_path = f"/{REDACTED}" if path and parts.path not in ("", "/") else parts.path
    return urlunsplit((parts.scheme, netloc, hidden_path, query if parts.query else "", ""))


def url_secrets(url: str, *, path: bool = False) -> list[str]:
    """The secret parts of ``url`` as they may appear in text, raw and decoded: the user info,
    the query and each of its ``key=value`` items, the path with ``path``; and on their own the
    user, the password and each query value of four characters or more. A shorter one is masked
    within its user info or item: on its own (a ``v=2``'s ``2``) it would garble every line."""
    parts = urlsplit(url)
    user_info, at, _ = parts.netloc.rpartition("@")
    within = [user_info] if at else []
    alone = user_info.split(":", 1) if at else []
    if parts.query:
        items = parts.query.split("&")
        within += [parts.query, *items]
        alone += [item.partition("=")[2] for item in items]
    if path and parts.path not in ("", "/"):
        within.append(parts.path)
    forms = {form for part in within for form in (part, unquote(part))}
    forms |= {form for part in alone for form in (part, unquote(part)) if len(form) >= 4}
    return sorted(form for form in forms if form)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = 300,
) -> bool:
    """Whether ``signature`` is ours for this body and ``timestamp`` is within ``tolerance`` s.

    Compares in constant time, so a forger learns nothing from how long a refusal takes.
    """
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 20):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class HttpSink:
    """Signed JSON batches to a webhook; see the module docstring."""

    Config: ClassVar[type[SinkSettings]] = HttpSettings

    def __init__(
        self,
        config: HttpSettings,
        context: SinkContext,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._name = context.name
        self._url = str(config.url)
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        # To scrub from anything the downstream echoes back into our errors, as the logs do.
        secrets = (config.hmac_secret, *config.headers.values(), *config.hidden_secrets())
        self._masker = Masker(secret for secret in secrets if secret)

    async def open(self) -> None:
        self._client = self._new_client()

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        assert self._client is not None, "send() before open()"
        # The outbox holds each record as compact JSON already: join, never re-serialise.
        body = b'{"records":[' + b",".join(record.data for record in batch) + b"]}"
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange (a slow drip).
            with anyio.fail_after(self._config.timeout):
                async with self._client.stream(
                    "POST", self._url, content=body, headers=self._headers(body)
                ) as response:
                    start = await _read_start(response)
        except (TimeoutError, httpx.TimeoutException):
            raise RetryableSinkError(f"no answer within {self._config.timeout:g}s") from None
        except httpx.HTTPError as error:
            message = self._masker.text(f"{type(error).__name__}: {error}")
            raise RetryableSinkError(message) from None
        return self._judge(response, start)

    async def reopen(self) -> None:
        """A fresh client: new connections, new DNS lookups (SIGHUP)."""
        old, self._client = self._client, self._new_client()
        if old is not None:
            await old.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._config.timeout,
            follow_redirects=False,
            headers={"User-Agent": f"tcsms-poller/{__version__}"},
        )

    def _headers(self, body: bytes) -> httpx.Headers:
        headers = httpx.Headers(
            {name: value.reveal() for name, value in self._config.headers.items()}
        )
        # Set after the configured ones, replacing any spelling of the same name.
        headers["Content-Type"] = "application/json"
        if self._config.hmac_secret:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._config.hmac_secret.reveal(), timestamp, body)
        return headers

    def _judge(self, response: httpx.Response, start: bytes) -> Ack:
        """Map the answer onto the sink contract: ack, retry, or dead-letter."""
        status = response.status_code
        if response.is_success:
            return Ack()
        if 300 <= status < 400:
            location = self._excerpt(response.headers.get("Location", "?").encode())
            raise RejectedBatchError(
                f"HTTP {status} redirect to {location}: redirects are not followed, "
                "configure the final URL"
            )
        reason = f"HTTP {status}: {self._excerpt(start) or response.reason_phrase}"
        if status in _RETRYABLE or status >= 500:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), now=self._clock(), cap=MAX_RETRY_AFTER
            )
            raise RetryableSinkError(reason, retry_after=retry_after)
        raise RejectedBatchError(reason)

    def _excerpt(self, raw: bytes) -> str:
        """One short, safe line of what the downstream said: secrets scrubbed, no control chars."""
        text = self._masker.text(raw.decode("utf-8", "replace"))
        text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


async def _read_start(response: httpx.Response) -> bytes:
    """At most the first ``_EXCERPT_BYTES`` of an answer's body, however long it is."""
    start = b""
    async for chunk in response.aiter_bytes():
        start += chunk
        if len(start) >= _EXCERPT_BYTES:
            break
    return start[:_EXCERPT_BYTES]
