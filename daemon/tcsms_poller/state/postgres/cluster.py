"""What the instances of a cluster share besides leases: the account's rates, pauses, and claims
on phone numbers; all timed by the database's clock.

Rate shares. Each instance asks, every claim round, for the actions it calls; the database splits
each action's limit between the instances that want it (``limit // n``, the remainder to the
first ids) and grants each its share until ``expires_at``. A share is granted only out of what the
other rows do not hold, so the shares in force never add up to more than the limit:

- a row holds its ``rate`` until ``expires_at + window`` (the holder stops sending before
  ``expires_at``, and its last requests stay in Tencent's sliding window for one more window);
- a decrease keeps the old rate counted as ``held_rate`` until the holder reports, in a later
  claim, that its limiter applies the new rate (then ``held_until`` becomes that claim's time plus
  one window), or until the old rate's own ``expires_at + window``;
- an instance that no longer calls an action gives its share up the same way (rate 0).

The instances' clocks never matter: each measures its share's sliding window with its monotonic
clock, and every expiry is the database's.

Pauses. A ``RequestLimitExceeded`` pauses its action on every instance: the instance that saw it
writes ``rate_pauses`` (``until`` on the database's clock), and every instance reads the pauses
twice a second and applies the time left.

Number claims. One poller at a time for a phone number of an app, whatever worker polls it: a row
per claimed ``(app_id, phone)`` with a holder, a token and an expiry. A claim is taken only when
the number is free or its claim expired (never shared, not even by two workers of one instance),
renewed by its holder with the same token, and deleted when the poll ends. A commit that depends
on a claim locks its row ``FOR SHARE`` and fails with ``LeaseLostError`` when it names another
holder or token (``check_claims``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection

from tcsms_poller.state.postgres.schema import SHARES_LOCK
from tcsms_poller.state.roles import LeaseLostError, NumberClaim

__all__ = [
    "check_claims",
    "claim_numbers",
    "claims_by_holder",
    "pause_action",
    "paused_actions",
    "release_numbers",
    "renew_numbers",
    "share_rates",
    "shares_snapshot",
    "starved_actions",
]

Connection = AsyncConnection[tuple[Any, ...]]

# What a row of rate_shares still holds of the limit now (see the module docstring).
_COMMITTED = (
    "GREATEST(CASE WHEN expires_at + make_interval(secs => %(window)s) > clock_timestamp() "
    "THEN rate ELSE 0 END, "
    "CASE WHEN held_until > clock_timestamp() THEN held_rate ELSE 0 END)"
)


def fair_share(limit: int, members: Sequence[str], me: str) -> int:
    """``me``'s part of ``limit`` split between ``members`` (sorted ids; the first get the
    remainder)."""
    base, extra = divmod(limit, len(members))
    return base + (1 if members.index(me) < extra else 0)


async def share_rates(
    connection: Connection,
    instance: str,
    wanted: Mapping[str, int],
    applied: Mapping[str, int],
    *,
    ttl: float,
    window: float,
) -> dict[str, int]:
    """Grant ``instance`` its shares of the actions it wants (action -> limit), give up those of
    the others it holds; ``applied`` is the rate each of its limiters enforces now. Returns the
    granted rate of every action it has a row for (0: wait)."""
    params: dict[str, Any] = {"me": instance, "window": window, "ttl": ttl}
    await connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", SHARES_LOCK)
    await connection.execute(
        f"DELETE FROM rate_shares WHERE {_COMMITTED} = 0 "  # noqa: S608
        "AND expires_at <= clock_timestamp()",
        params,
    )
    # A decrease the limiter applies: its old rate leaves Tencent's window one window from now.
    for action, rate in applied.items():
        await connection.execute(
            "UPDATE rate_shares SET held_until = LEAST(held_until, "
            "clock_timestamp() + make_interval(secs => %(window)s)) "
            "WHERE action = %(action)s AND instance = %(me)s AND rate >= %(rate)s",
            {**params, "action": action, "rate": rate},
        )
    cursor = await connection.execute(
        f"SELECT action, instance, rate, expires_at > clock_timestamp(), {_COMMITTED} "  # noqa: S608
        "FROM rate_shares",
        params,
    )
    rows = await cursor.fetchall()
    mine = {str(row[0]): int(row[2]) for row in rows if row[1] == instance}
    granted: dict[str, int] = {}
    for action in sorted(set(wanted) | set(mine)):
        others = [row for row in rows if row[0] == action and row[1] != instance]
        held_by_others = sum(int(row[4]) for row in others)
        if action in wanted:
            members = sorted({instance} | {str(row[1]) for row in others if row[3]})
            limit = wanted[action]
            rate = max(0, min(fair_share(limit, members, instance), limit - held_by_others))
            expires = "clock_timestamp() + make_interval(secs => %(ttl)s)"
        else:
            rate, expires = 0, "clock_timestamp()"  # not a member any more
        # A decrease keeps the old rate held (until applied, or the old grant's window ends).
        await connection.execute(
            "INSERT INTO rate_shares AS s (action, instance, rate, expires_at) "  # noqa: S608
            f"VALUES (%(action)s, %(me)s, %(rate)s, {expires}) "
            "ON CONFLICT (action, instance) DO UPDATE SET "
            "held_rate = CASE WHEN excluded.rate < s.rate THEN GREATEST(s.rate, "
            "CASE WHEN s.held_until > clock_timestamp() THEN s.held_rate ELSE 0 END) "
            "ELSE s.held_rate END, "
            "held_until = CASE WHEN excluded.rate < s.rate THEN GREATEST(s.held_until, "
            "s.expires_at + make_interval(secs => %(window)s)) ELSE s.held_until END, "
            "rate = excluded.rate, expires_at = excluded.expires_at",
            {**params, "action": action, "rate": rate},
        )
        granted[action] = rate
    return granted


async def pause_action(connection: Connection, action: str, seconds: float) -> None:
    """Pause ``action`` on every instance for ``seconds`` from now (extending, never
    shortening)."""
    await connection.execute(
        "INSERT INTO rate_pauses AS p (action, until) "
        "VALUES (%s, clock_timestamp() + make_interval(secs => %s)) "
        "ON CONFLICT (action) DO UPDATE SET until = GREATEST(p.until, excluded.until)",
        (action, seconds),
    )


async def paused_actions(connection: Connection) -> dict[str, float]:
    """The actions paused now: action -> seconds left (on the database's clock)."""
    cursor = await connection.execute(
        "SELECT action, extract(epoch FROM until - clock_timestamp()) FROM rate_pauses "
        "WHERE until > clock_timestamp()"
    )
    return {str(action): float(left) for action, left in await cursor.fetchall()}


async def starved_actions(connection: Connection, instance: str) -> set[str]:
    """The actions another live instance wants and has no share of yet."""
    cursor = await connection.execute(
        "SELECT DISTINCT action FROM rate_shares WHERE instance <> %s AND rate = 0 "
        "AND expires_at > clock_timestamp()",
        (instance,),
    )
    return {str(row[0]) for row in await cursor.fetchall()}


async def claim_numbers(
    connection: Connection, holder: str, app_id: str, phones: Sequence[str], *, ttl: float
) -> list[NumberClaim]:
    """Claim each of ``phones`` that is free or whose claim expired; the claims won."""
    cursor = await connection.execute(
        "INSERT INTO number_claims AS c (app_id, phone, holder, token, expires_at) "
        "SELECT %(app)s, p.phone, %(me)s, nextval('lease_tokens'), "
        "clock_timestamp() + make_interval(secs => %(ttl)s) "
        "FROM unnest(%(phones)s::text[]) AS p (phone) ORDER BY p.phone "
        "ON CONFLICT (app_id, phone) DO UPDATE SET holder = excluded.holder, "
        "token = excluded.token, expires_at = excluded.expires_at "
        "WHERE c.expires_at < clock_timestamp() "
        "RETURNING c.phone, c.token",
        {"app": app_id, "me": holder, "phones": sorted(set(phones)), "ttl": ttl},
    )
    return [
        NumberClaim(app_id, str(phone), holder, int(token))
        for phone, token in await cursor.fetchall()
    ]


async def renew_numbers(
    connection: Connection, claims: Sequence[NumberClaim], *, ttl: float
) -> list[NumberClaim]:
    """Extend the claims still held as they were granted (same holder and token)."""
    if not claims:
        return []
    cursor = await connection.execute(
        "UPDATE number_claims AS c SET expires_at = "
        "clock_timestamp() + make_interval(secs => %s) "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS k (app_id, phone, holder, token) "
        "WHERE (c.app_id, c.phone, c.holder, c.token) = (k.app_id, k.phone, k.holder, k.token) "
        "RETURNING c.app_id, c.phone",
        (
            ttl,
            [c.app_id for c in claims],
            [c.phone for c in claims],
            [c.holder for c in claims],
            [c.token for c in claims],
        ),
    )
    kept = {(str(app), str(phone)) for app, phone in await cursor.fetchall()}
    return [claim for claim in claims if (claim.app_id, claim.phone) in kept]


async def release_numbers(connection: Connection, claims: Sequence[NumberClaim]) -> None:
    """Give up claims (their polls ended); a claim that passed on is left to its holder."""
    if not claims:
        return
    await connection.execute(
        "DELETE FROM number_claims AS c "
        "USING unnest(%s::text[], %s::text[], %s::bigint[]) AS k (app_id, phone, token) "
        "WHERE (c.app_id, c.phone, c.token) = (k.app_id, k.phone, k.token)",
        ([c.app_id for c in claims], [c.phone for c in claims], [c.token for c in claims]),
    )


async def check_claims(connection: Connection, claims: Sequence[NumberClaim]) -> None:
    """In the caller's transaction: ``LeaseLostError`` unless every number is still claimed as
    its claim says (the rows are locked ``FOR SHARE``, in (app, phone) order as claims take
    them: a takeover waits for the commit)."""
    if not claims:
        return
    keys = sorted({(claim.app_id, claim.phone) for claim in claims})
    cursor = await connection.execute(
        "SELECT c.app_id, c.phone, c.holder, c.token FROM number_claims c "
        "JOIN unnest(%s::text[], %s::text[]) AS k (app_id, phone) USING (app_id, phone) "
        "ORDER BY c.app_id, c.phone FOR SHARE OF c",
        ([app for app, _ in keys], [phone for _, phone in keys]),
    )
    held = {
        (str(app), str(phone)): (str(holder), int(token))
        for app, phone, holder, token in await cursor.fetchall()
    }
    for claim in claims:
        now = held.get((claim.app_id, claim.phone))
        if now != (claim.holder, claim.token):
            holder = "nobody" if now is None else now[0]
            raise LeaseLostError(
                f"the claim of {claim.holder} on a number of app {claim.app_id} passed to "
                f"{holder}: write refused"
            )


async def claims_by_holder(connection: Connection) -> dict[str, int]:
    """Live number claims per holder."""
    cursor = await connection.execute(
        "SELECT holder, COUNT(*) FROM number_claims WHERE expires_at > clock_timestamp() "
        "GROUP BY holder"
    )
    return {str(holder): int(count) for holder, count in await cursor.fetchall()}


async def shares_snapshot(connection: Connection) -> list[dict[str, Any]]:
    """The rate shares in force: action, instance, rate, seconds until they expire."""
    cursor = await connection.execute(
        "SELECT action, instance, rate, extract(epoch FROM expires_at - clock_timestamp()) "
        "FROM rate_shares WHERE expires_at > clock_timestamp() ORDER BY action, instance"
    )
    return [
        {
            "action": row[0],
            "instance": row[1],
            "rate": int(row[2]),
            "expires_in_s": round(float(row[3]), 1),
        }
        for row in await cursor.fetchall()
    ]
