"""The PostgreSQL schema, as an ordered list of migrations recorded in ``tcsms_schema``.

Append a migration to change the schema; never edit one that has shipped. Each runs in one
transaction with its version bump, and the whole migration runs under an advisory lock, so two
daemons starting at once migrate once: the second waits, then finds the schema current.
"""

from __future__ import annotations

import psycopg
from psycopg import AsyncConnection

from tcsms_poller.state.postgres.integrity import OWN_TABLES, missing_tables
from tcsms_poller.state.schema import SchemaError

__all__ = ["MIGRATE_LOCK", "MIGRATIONS", "REPLAY_LOCK", "SHARES_LOCK", "migrate"]

# Advisory lock keys of this program (two int4 keys: the program's, then the purpose's).
PROGRAM_KEY = 0x7C53  # "tcsms" (31827, written out in tcsms_append)
MIGRATE_LOCK = (PROGRAM_KEY, 1)
SHARES_LOCK = (PROGRAM_KEY, 3)  # one instance at a time divides the rates (cluster.py)
REPLAY_LOCK = (PROGRAM_KEY, 4)  # a replay queued while one is taken out (deadletters.py)

MIGRATIONS: tuple[str, ...] = (
    # 1: the pipeline, tracked numbers, conversions, worker health. Times are Unix seconds
    # (double precision), as in the SQLite schema, so both backends speak the same values.
    """
    CREATE TABLE seen (
        id text PRIMARY KEY,
        expires_at bigint NOT NULL
    );
    CREATE INDEX seen_by_expiry ON seen (expires_at);

    -- An identity is never reused, so sink cursors stay meaningful after purges. Its numbers
    -- are taken under OUTBOX_LOCK at the end of a commit (store.py), so they grow in the order
    -- rows become visible.
    CREATE TABLE outbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        data bytea NOT NULL
    );

    CREATE TABLE sink_cursors (
        name text PRIMARY KEY,
        acked_seq bigint NOT NULL,
        position text,
        updated_at double precision NOT NULL
    );

    CREATE TABLE numbers (
        app_id text NOT NULL,
        phone text NOT NULL,
        origin text NOT NULL,
        expires_at double precision,
        status_cursor bigint,
        reply_cursor bigint,
        next_due double precision NOT NULL,
        last_polled_at double precision,
        added_at double precision NOT NULL,
        PRIMARY KEY (app_id, phone)
    );
    CREATE INDEX numbers_by_due ON numbers (app_id, next_due);

    CREATE TABLE conversions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app_id text NOT NULL,
        serial_no text NOT NULL,
        conversion_time bigint,
        enqueued_at double precision NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision NOT NULL,
        last_error text
    );
    CREATE INDEX conversions_by_due ON conversions (next_attempt_at);

    CREATE TABLE rejected (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at double precision NOT NULL,
        source text NOT NULL,
        reason text NOT NULL,
        raw text NOT NULL
    );

    CREATE TABLE workers (
        name text PRIMARY KEY,
        healthy boolean NOT NULL,
        last_error text,
        last_success_at double precision,
        updated_at double precision NOT NULL
    );

    -- The pipeline's write in one statement (one round trip, and alone its own transaction):
    -- mark the ids not seen (or expired) seen, then append their records to the outbox in the
    -- given order, numbered under the outbox lock (31827, 2), held to the end of the
    -- transaction (store.py). p_ids are distinct; p_data[i] is the record of p_ids[i].
    CREATE FUNCTION tcsms_append(
        p_ids text[], p_data bytea[], p_expires_at bigint, p_now double precision,
        OUT fresh text[], OUT last_seq bigint
    ) LANGUAGE plpgsql AS $$
    BEGIN
        WITH marked AS (
            INSERT INTO seen AS s (id, expires_at)
            SELECT u.id, p_expires_at FROM unnest(p_ids) AS u (id) ORDER BY u.id
            ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
            WHERE s.expires_at <= p_now
            RETURNING s.id
        )
        SELECT coalesce(array_agg(marked.id), '{}') INTO fresh FROM marked;
        last_seq := 0;
        IF cardinality(fresh) > 0 THEN
            PERFORM pg_advisory_xact_lock(31827, 2);
            WITH added AS (
                INSERT INTO outbox (data)
                SELECT r.data FROM unnest(p_ids, p_data) WITH ORDINALITY AS r (id, data, n)
                WHERE r.id = ANY (fresh) ORDER BY r.n
                RETURNING outbox.seq
            )
            SELECT max(added.seq) INTO last_seq FROM added;
        END IF;
    END
    $$;
    """,
    # 2: cluster mode. Each daemon registers in ``instances`` and heartbeats there; ``leases``
    # gives one instance at a time a piece of work (a sink, the Tencent pulls). Times are the
    # database's own clock (timestamptz), never a daemon's: their clocks may differ. A lease's
    # token grows with every change of holder, so a write fenced on a token fails once another
    # instance took the lease (state/postgres/leases.py).
    """
    CREATE TABLE instances (
        id text PRIMARY KEY,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        version text NOT NULL,
        healthy boolean NOT NULL DEFAULT true,
        detail text
    );

    CREATE SEQUENCE lease_tokens;
    CREATE TABLE leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        token bigint NOT NULL,
        acquired_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    """,
    # 3: tracked messages until their receipt, and the numbers they keep due (state/postgres/
    # messages.py), as SQLite's migration 5.
    """
    CREATE TABLE messages (
        serial_no text PRIMARY KEY,
        app_id text NOT NULL,
        phone text NOT NULL,
        sent_at bigint NOT NULL,
        state text NOT NULL,             -- pending | delivered | failed | missing
        tracked_at double precision NOT NULL,
        resolved_at double precision,
        report_status text,
        description text,
        user_receive_time bigint
    );
    CREATE INDEX messages_pending_by_number ON messages (app_id, phone, sent_at)
        WHERE state = 'pending';
    CREATE INDEX messages_pending_by_sent ON messages (app_id, sent_at) WHERE state = 'pending';
    CREATE INDEX messages_resolved ON messages (resolved_at) WHERE state <> 'pending';

    CREATE TABLE message_numbers (
        app_id text NOT NULL,
        phone text NOT NULL,
        next_due double precision NOT NULL,
        PRIMARY KEY (app_id, phone)
    );
    CREATE INDEX message_numbers_by_due ON message_numbers (app_id, next_due);
    """,
    # 4: the cluster shares the account's limits and the per-number work. ``rate_shares``: the
    # requests per second of an action the database granted an instance, until ``expires_at``;
    # after a decrease the old rate stays counted (``held_rate``) until ``held_until``, since
    # requests sent under it are still in Tencent's window. ``rate_pauses``: an action paused
    # cluster-wide after a ``RequestLimitExceeded``. ``number_claims``: one poller at a time for
    # a phone number of an app, whatever worker polls it (state/postgres/cluster.py).
    """
    CREATE TABLE rate_shares (
        action text NOT NULL,
        instance text NOT NULL,
        rate integer NOT NULL,
        expires_at timestamptz NOT NULL,
        held_rate integer NOT NULL DEFAULT 0,
        held_until timestamptz NOT NULL DEFAULT '-infinity',
        PRIMARY KEY (action, instance)
    );

    CREATE TABLE rate_pauses (
        action text PRIMARY KEY,
        until timestamptz NOT NULL
    );

    CREATE TABLE number_claims (
        app_id text NOT NULL,
        phone text NOT NULL,
        holder text NOT NULL,
        token bigint NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (app_id, phone)
    );
    CREATE INDEX number_claims_by_holder ON number_claims (holder);
    """,
    # 5: the dead letters of each sink, in the database so that any instance of a cluster lists
    # and replays them, whichever instance dead-lettered them (state/postgres/deadletters.py;
    # a SQLite state keeps the files of sinks/deadletter.py). ``dead_letters``: the records a
    # sink refused for good, never changed (``dead-letter purge`` deletes them);
    # ``dead_letter_replays``: records queued again, in
    # ``id`` order; ``dead_letters_replayed``: the ids of replays the sink acknowledged.
    """
    CREATE TABLE dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sink text NOT NULL,
        dead_lettered_at double precision NOT NULL,
        reason text NOT NULL,
        record_id text NOT NULL,
        data bytea NOT NULL
    );
    CREATE INDEX dead_letters_by_sink ON dead_letters (sink, id);

    CREATE TABLE dead_letter_replays (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sink text NOT NULL,
        record_id text NOT NULL,
        data bytea NOT NULL,
        UNIQUE (sink, record_id)
    );

    CREATE TABLE dead_letters_replayed (
        sink text NOT NULL,
        record_id text NOT NULL,
        PRIMARY KEY (sink, record_id)
    );
    """,
    # 6: dead letters by record id, for the lookups of enqueue, purge and the forgetting of
    # delivered ids (state/postgres/deadletters.py), which would otherwise read all of a sink's.
    """
    CREATE INDEX dead_letters_by_record ON dead_letters (sink, record_id);
    """,
)


async def migrate(connection: AsyncConnection[tuple[object, ...]]) -> int:
    """Bring the schema to the latest version under the migration lock; return it.

    ``connection`` is in autocommit mode; the lock is a session lock, released at the end.
    Once the schema is current, the role needs only to read and write the tables.
    """
    # A standby (or default_transaction_read_only) would pass every read and fail every write.
    read_only = await connection.execute("SELECT current_setting('transaction_read_only')")
    if await read_only.fetchone() == ("on",):
        raise SchemaError(
            "it accepts no writes (transaction_read_only is on: a standby, or "
            "default_transaction_read_only): state.url must name the primary"
        )
    await connection.execute("SELECT pg_advisory_lock(%s, %s)", MIGRATE_LOCK)
    try:
        exists = await connection.execute("SELECT to_regclass('tcsms_schema') IS NOT NULL")
        if await exists.fetchone() != (True,):  # a role without CREATE may run a current one
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS tcsms_schema (version integer NOT NULL)"
            )
        try:
            cursor = await connection.execute("SELECT max(version) FROM tcsms_schema")
        except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedFunction):
            raise SchemaError(
                "its table tcsms_schema is not tcsms-poller's (no integer column version): "
                "give tcsms-poller a database of its own"
            ) from None
        row = await cursor.fetchone()
        version = int(row[0]) if row and row[0] is not None else 0  # type: ignore[call-overload]
        missing = await missing_tables(connection) if version == 0 else OWN_TABLES
        if len(missing) < len(OWN_TABLES):  # migration 1 creates them all, with its version
            found = ", ".join(name for name in OWN_TABLES if name not in missing)
            raise SchemaError(
                f"it has tables {found} but tcsms_schema records no version: another program's "
                "tables of those names (give tcsms-poller a database of its own), or an emptied "
                "tcsms_schema (restore it from a backup)"
            )
        if version > len(MIGRATIONS):
            raise SchemaError(
                f"state database schema version {version} is newer than this tcsms-poller "
                f"understands ({len(MIGRATIONS)}): was it written by a newer release?"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with connection.transaction():
                await connection.execute(script)
                await connection.execute(
                    "INSERT INTO tcsms_schema (version) VALUES (%s)", (number,)
                )
    finally:
        await connection.execute("SELECT pg_advisory_unlock(%s, %s)", MIGRATE_LOCK)
    return len(MIGRATIONS)
