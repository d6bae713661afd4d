"""Cluster membership and leases in PostgreSQL, timed by the database's clock.

A lease is a row of ``leases``: its holder, a fencing token and an expiry computed by the
server (``clock_timestamp() + ttl``), so the daemons' clocks never matter. ``claim`` renews the
leases an instance holds and takes the free ones it wants, in one statement: a row is taken
only once it expired, or when its holder is the claimer itself (a restarted process with the same
instance id). Every change of holder draws a new token from ``lease_tokens``; a renewal keeps it.

Fencing: a write that a lease guards runs ``check_fence`` in its own transaction. It locks the
lease row (``FOR SHARE``), so a takeover waits for the write's commit, and fails the write with
``LeaseLostError`` when the row names another holder or token: whatever a paused or cut-off holder
tries to commit after another instance took over is rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from tcsms_poller.state.postgres.cluster import claims_by_holder, shares_snapshot
from tcsms_poller.state.roles import Fence, LeaseLostError

__all__ = [
    "LeaseRow",
    "check_fence",
    "claim",
    "cluster_snapshot",
    "heartbeat",
    "leave",
    "release",
]

Connection = AsyncConnection[tuple[Any, ...]]
FORGET_AFTER = 3600.0  # seconds without a heartbeat after which an instance leaves the registry


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease this instance holds after a claim."""

    name: str
    token: int


async def heartbeat(
    connection: Connection, instance: str, *, version: str, healthy: bool, detail: str | None
) -> None:
    """Register the instance, or refresh its heartbeat and health; forget long-dead ones."""
    await connection.execute(
        "INSERT INTO instances (id, started_at, heartbeat_at, version, healthy, detail) "
        "VALUES (%s, clock_timestamp(), clock_timestamp(), %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
        "version = excluded.version, healthy = excluded.healthy, detail = excluded.detail",
        (instance, version, healthy, detail),
    )
    # Instances gone without leaving (kill -9) stay visible to ``status`` for a while.
    await connection.execute(
        "DELETE FROM instances WHERE heartbeat_at < clock_timestamp() - make_interval(secs => %s)",
        (FORGET_AFTER,),
    )


async def leave(connection: Connection, instance: str, *, after: float) -> None:
    """The instance stops: its leases and its shares of the limits expire ``after`` seconds from
    now (the requests it sent in the last second still count against the account's limits), its
    number claims end, and it leaves the registry."""
    await connection.execute(
        "UPDATE leases SET expires_at = LEAST(expires_at, "
        "clock_timestamp() + make_interval(secs => %s)) WHERE holder = %s",
        (after, instance),
    )
    # Its shares of the limits pass on as its leases do (it sends nothing any more; its last
    # requests stay in Tencent's window until then), its number claims at once.
    await connection.execute(
        "UPDATE rate_shares SET held_rate = GREATEST(rate, CASE WHEN held_until > "
        "clock_timestamp() THEN held_rate ELSE 0 END), "
        "held_until = clock_timestamp() + make_interval(secs => %s), rate = 0, "
        "expires_at = clock_timestamp() - interval '1 hour' WHERE instance = %s",
        (after, instance),
    )
    await connection.execute("DELETE FROM number_claims WHERE holder = %s", (instance,))
    await connection.execute("DELETE FROM instances WHERE id = %s", (instance,))


async def claim(
    connection: Connection, instance: str, names: Sequence[str], *, ttl: float
) -> list[LeaseRow]:
    """Renew or take each of ``names`` that is ours or free; the ones held after it."""
    cursor = await connection.execute(
        "INSERT INTO leases AS l (name, holder, token, acquired_at, expires_at) "
        "SELECT n.name, %(me)s, nextval('lease_tokens'), clock_timestamp(), "
        "clock_timestamp() + make_interval(secs => %(ttl)s) "
        "FROM unnest(%(names)s::text[]) AS n (name) ORDER BY n.name "
        "ON CONFLICT (name) DO UPDATE SET "
        "token = CASE WHEN l.holder = excluded.holder THEN l.token ELSE excluded.token END, "
        "acquired_at = CASE WHEN l.holder = excluded.holder "
        "THEN l.acquired_at ELSE excluded.acquired_at END, "
        "holder = excluded.holder, expires_at = excluded.expires_at "
        "WHERE l.holder = excluded.holder OR l.expires_at < clock_timestamp() "
        "RETURNING l.name, l.token",
        {"me": instance, "names": list(names), "ttl": ttl},
    )
    return [LeaseRow(str(name), int(token)) for name, token in await cursor.fetchall()]


async def release(connection: Connection, instance: str, names: Sequence[str]) -> None:
    """Give up leases (a stopping sink, a daemon at shutdown) so another may take them now."""
    await connection.execute(
        "DELETE FROM leases WHERE holder = %s AND name = ANY(%s::text[])", (instance, list(names))
    )


async def check_fence(connection: Connection, fence: Fence | None) -> None:
    """In the caller's transaction: ``LeaseLostError`` unless the lease is still the fence's
    (no fence: a write no lease guards, which passes)."""
    if fence is None:
        return
    cursor = await connection.execute(
        "SELECT holder, token FROM leases WHERE name = %s FOR SHARE", (fence.lease,)
    )
    row = await cursor.fetchone()
    if row is None or row[0] != fence.holder or int(row[1]) != fence.token:
        holder = "nobody" if row is None else str(row[0])
        raise LeaseLostError(
            f"lease {fence.lease} passed from {fence.holder} to {holder}: write refused"
        )


async def cluster_snapshot(connection: Connection) -> dict[str, Any]:
    """The instances (heartbeat age by the database's clock), who holds which lease, the rate
    shares in force and the live number claims per instance."""
    cursor = await connection.execute(
        "SELECT id, extract(epoch FROM clock_timestamp() - heartbeat_at), "
        "extract(epoch FROM started_at), version, healthy, detail FROM instances ORDER BY id"
    )
    instances = [
        {
            "id": row[0],
            "heartbeat_age_s": round(float(row[1]), 1),
            "started_at": float(row[2]),
            "version": row[3],
            "healthy": row[4],
            "detail": row[5],
        }
        for row in await cursor.fetchall()
    ]
    cursor = await connection.execute(
        "SELECT name, holder, token, extract(epoch FROM expires_at - clock_timestamp()) "
        "FROM leases ORDER BY name"
    )
    leases = [
        {
            "name": row[0],
            "holder": row[1],
            "token": int(row[2]),
            "expires_in_s": round(float(row[3]), 1),
        }
        for row in await cursor.fetchall()
    ]
    return {
        "instances": instances,
        "leases": leases,
        "rate_shares": await shares_snapshot(connection),
        "number_claims": await claims_by_holder(connection),
    }
