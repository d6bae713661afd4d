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

Any 2xx acknowledges. 429, 5xx and transport errors retry with capped exponential backoff and
jitter, honouring ``Retry-After``; any other status dead-letters the batch with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import AnyHttpUrl, Field

from tcsms_poller.fields import Duration, Secret
from tcsms_poller.sinks.base import Ack, OutboxRecord, SinkContext, SinkSettings

__all__ = ["HttpSink"]


class HttpSettings(SinkSettings):
    """Where to post, how long to wait, how to sign."""

    type: Literal["http"] = "http"
    url: AnyHttpUrl
    batch_size: int = Field(default=100, ge=1, le=10_000)
    timeout: Duration = 10.0
    hmac_secret: Secret | None = None
    headers: dict[str, Secret] = Field(default_factory=dict)


class HttpSink:
    """Signed JSON batches to a webhook; see the module docstring."""

    Config: ClassVar[type[SinkSettings]] = HttpSettings

    def __init__(self, config: HttpSettings, context: SinkContext) -> None:
        self._config = config
        self._context = context

    async def open(self) -> None:
        raise NotImplementedError

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        raise NotImplementedError

    async def reopen(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError
