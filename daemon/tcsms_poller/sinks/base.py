"""The contract between the outbox and a sink, built-in or third-party.

Guarantees the daemon gives a sink (one drainer task per sink enforces them):

- ``open()`` is awaited once, before the first ``send()``.
- ``send()`` and ``reopen()`` are never called concurrently on one sink: one call at a time.
- Batches arrive in outbox order; after a failed ``send()`` the same records come again, first.
- ``aclose()`` is awaited once, after the last ``send()`` returned; nothing is called after it.
- A sink may be built and dropped without ``open()`` (a reload checks a changed sink this way
  before it stops the running one), or opened and closed without a ``send()`` (a reload that
  failed; in cluster mode, every sink as it starts on an instance, which builds and opens it
  again from its cursor when it gets the sink's lease): the constructor only checks and keeps
  its settings; files and connections wait for ``open()``.

Guarantees a sink gives the daemon:

- Returning an ``Ack`` means the whole batch is as durable downstream as the sink can make it;
  the outbox may forget the batch from then on. ``Ack.position`` is committed atomically with the
  sink's cursor and handed back in ``SinkContext.position`` after a restart (the file sink keeps
  its byte offset there, which is how it stays exactly-once across crashes).
- Raising ``RetryableSinkError`` (or any exception but the next) means no record of the batch
  counts as delivered: it is retried with capped exponential backoff and jitter, honouring
  ``retry_after``, until ``max_retry_duration`` has passed; then it is dead-lettered.
- Raising ``RejectedBatchError`` means retrying cannot help (e.g. HTTP 400): the batch goes to the
  dead-letter file at once, with the reason. Nothing is ever dropped silently.
- Delivery is at-least-once: a crash between the downstream write and the ack replays the batch,
  so downstream consumers dedupe by record ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import Field

from tcsms_poller.records import OutboxRecord  # re-exported: plugins import it from here
from tcsms_poller.settings_types import ConfigModel, Duration

__all__ = [
    "Ack",
    "OutboxRecord",
    "RejectedBatchError",
    "RetryableSinkError",
    "Sink",
    "SinkContext",
    "SinkSettings",
    "SinkType",
]


@dataclass(frozen=True, slots=True)
class Ack:
    """A sink's acknowledgement of a whole batch."""

    position: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What the daemon hands a sink when it builds it."""

    name: str
    state_dir: Path
    position: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class RetryableSinkError(Exception):
    """The batch was not delivered; try again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedBatchError(Exception):
    """The downstream refused the batch for good: dead-letter it."""


class SinkSettings(ConfigModel):
    """Options every sink has; a sink's own ``Config`` extends this model."""

    type: str
    # A file name too (dead-letter/<name>.jsonl): no slash, no leading dot, no control character.
    name: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
        description="cursor key; defaults to the type",
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    max_retry_duration: Duration = Field(default=86_400.0, description="then dead-letter")
    max_backoff: Duration = Field(default=60.0, description="cap of the retry backoff")
    unhealthy_after: Duration = Field(default=300.0, description="retrying longer is unhealthy")

    @property
    def sink_name(self) -> str:
        """The name the cursor, metrics and logs use."""
        return self.name or self.type


class Sink(Protocol):
    """A destination for records; see the module docstring for the contract."""

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack: ...

    async def reopen(self) -> None:
        """Reopen files or connections (SIGHUP, e.g. after logrotate)."""

    async def aclose(self) -> None: ...


class SinkType(Protocol):
    """What an entry point in the ``tcsms_poller.sinks`` group names: usually the sink class."""

    Config: ClassVar[type[SinkSettings]]

    def __call__(self, config: Any, context: SinkContext) -> Sink: ...
