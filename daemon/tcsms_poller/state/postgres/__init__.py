"""The state in PostgreSQL: one database shared by the daemons that use it (see docs/state.md)."""

from __future__ import annotations

from tcsms_poller.state.postgres.store import PostgresStore
from tcsms_poller.state.postgres.url import mask_url

__all__ = ["PostgresStore", "mask_url"]
