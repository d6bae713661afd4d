"""Connecting to the state database: the settings of every connection, errors without the
password, and the read-only snapshot ``status`` takes beside a running daemon."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection

from tcsms_poller.masking import Masker
from tcsms_poller.state.postgres import leases, numbers
from tcsms_poller.state.postgres.url import mask_url
from tcsms_poller.state.roles import StateError

__all__ = ["CONNECT_TIMEOUT", "connection_settings", "describe", "read_snapshot"]

CONNECT_TIMEOUT = 10  # seconds for one connection attempt


def connection_settings(statement_timeout: float) -> dict[str, Any]:
    """The libpq and psycopg settings of every connection the store opens."""
    return {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "tcsms-poller",
        # A network cut that sends nothing back must not hang a call forever: the kernel
        # gives up on unacknowledged data after 30 s, and on a silent idle peer after 25 s.
        "tcp_user_timeout": 30_000,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        # Every write durable when its commit returns, whatever the server's default.
        "options": f"-c statement_timeout={int(statement_timeout * 1000)} -c synchronous_commit=on",
    }


def describe(error: BaseException, url: str | None) -> str:
    """The error's first line, without the URL's password should a driver quote it (masked as
    the logs mask it: a short password only where it stands alone, see ``masking.py``)."""
    message = (str(error).strip() or type(error).__name__).splitlines()[0]
    if url is not None:
        password = psycopg.conninfo.conninfo_to_dict(url).get("password")
        if password:
            message = Masker([str(password)]).text(message)
    return message


async def read_snapshot(url: str, *, now: float) -> dict[str, Any]:
    """What ``status`` shows, read over one connection (beside a running daemon or not)."""
    try:
        connection = await AsyncConnection.connect(url, connect_timeout=CONNECT_TIMEOUT)
        async with connection, connection.transaction():
            await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = await numbers.snapshot_of(connection, now=now, database=mask_url(url))
            snapshot["cluster"] = await leases.cluster_snapshot(connection)
            return snapshot
    except psycopg.Error as error:
        message = describe(error, url)
        raise StateError(f"cannot read state database {mask_url(url)}: {message}") from None
