"""Durable state: seen ids, the outbox and sink cursors, tracked numbers, conversions.

``roles.py`` says what the daemon asks of it; two backends implement that: ``store.py`` (SQLite,
one file beside the daemon, the default) with its helper modules, and ``postgres/`` (a shared
PostgreSQL database). ``open_state`` picks one from the ``state:`` settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tcsms_poller.state.roles import CommitResult, StateError, StateStore

if TYPE_CHECKING:
    from tcsms_poller.config.model import StateSettings

__all__ = ["CommitResult", "StateError", "StateStore", "open_state"]


async def open_state(
    settings: StateSettings, *, clock: Callable[[], float] = time.time
) -> StateStore:
    """Open (creating and migrating as needed) the configured state; ``StateError`` if it fails."""
    if settings.url is not None:
        from tcsms_poller.state.postgres import PostgresStore  # psycopg only when configured

        return await PostgresStore.open(
            settings.url.reveal(),
            dedupe_ttl=settings.dedupe_ttl,
            pool_size=settings.pool_size,
            statement_timeout=settings.statement_timeout,
            clock=clock,
        )
    from tcsms_poller.state.store import SqliteStore

    return await SqliteStore.open(settings.path, dedupe_ttl=settings.dedupe_ttl, clock=clock)
