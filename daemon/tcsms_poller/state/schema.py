"""The database schema, as an ordered list of migrations keyed by ``PRAGMA user_version``.

Append a migration to change the schema; never edit one that has shipped. Each runs in one
transaction, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "SchemaError", "migrate"]

MIGRATIONS: tuple[str, ...] = (
    # 1: the pipeline, tracked numbers, conversions, worker health.
    """
    CREATE TABLE seen (
        id TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX seen_by_expiry ON seen (expires_at);

    -- AUTOINCREMENT: a seq is never reused, even after purges, so sink cursors stay meaningful.
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        data BLOB NOT NULL
    );

    CREATE TABLE sink_cursors (
        name TEXT PRIMARY KEY,
        acked_seq INTEGER NOT NULL,
        position TEXT,
        updated_at REAL NOT NULL
    );

    CREATE TABLE cursors (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );

    CREATE TABLE numbers (
        app_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        origin TEXT NOT NULL,            -- config | file | api
        expires_at REAL,                 -- NULL: tracked until removed from config
        status_cursor INTEGER,           -- newest UserReceiveTime seen
        reply_cursor INTEGER,            -- newest ReplyTime seen
        next_due REAL NOT NULL,
        last_polled_at REAL,
        added_at REAL NOT NULL,
        PRIMARY KEY (app_id, phone)
    ) WITHOUT ROWID;
    CREATE INDEX numbers_by_due ON numbers (app_id, next_due);

    CREATE TABLE conversions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        app_id TEXT NOT NULL,
        serial_no TEXT NOT NULL,
        conversion_time INTEGER,
        enqueued_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT
    );
    CREATE INDEX conversions_by_due ON conversions (next_attempt_at);

    CREATE TABLE rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        raw TEXT NOT NULL
    );

    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        healthy INTEGER NOT NULL,
        last_error TEXT,
        last_success_at REAL,
        updated_at REAL NOT NULL
    );
    """,
    # 2: new seen ids are appended here first and merged into seen in batches (state/seen.py).
    """
    CREATE TABLE seen_recent (
        id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    """,
    # 3: what each origin's numbers were at its last sync, so an unchanged list costs no diff.
    # Any row of the app added, removed or moved to another origin forgets the app's digests.
    """
    CREATE TABLE number_sources (
        app_id TEXT NOT NULL,
        origin TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (app_id, origin)
    ) WITHOUT ROWID;
    CREATE TRIGGER numbers_inserted AFTER INSERT ON numbers BEGIN
        DELETE FROM number_sources WHERE app_id = NEW.app_id;
    END;
    CREATE TRIGGER numbers_deleted AFTER DELETE ON numbers BEGIN
        DELETE FROM number_sources WHERE app_id = OLD.app_id;
    END;
    CREATE TRIGGER numbers_reassigned AFTER UPDATE OF origin ON numbers BEGIN
        DELETE FROM number_sources WHERE app_id = NEW.app_id;
    END;
    """,
    # 4: a poll that saw no record used to store cursor 0 instead of leaving NULL, which made
    # every later poll of the number span the API's 7 days instead of ``lookback``.
    """
    UPDATE numbers SET status_cursor = NULL WHERE status_cursor = 0;
    UPDATE numbers SET reply_cursor = NULL WHERE reply_cursor = 0;
    """,
    # 5: tracked messages until their receipt (state/messages.py), and the numbers they keep due.
    """
    CREATE TABLE messages (
        serial_no TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        state TEXT NOT NULL,             -- pending | delivered | failed | missing
        tracked_at REAL NOT NULL,
        resolved_at REAL,
        report_status TEXT,
        description TEXT,
        user_receive_time INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX messages_pending_by_number ON messages (app_id, phone, sent_at)
        WHERE state = 'pending';
    CREATE INDEX messages_pending_by_sent ON messages (app_id, sent_at) WHERE state = 'pending';
    CREATE INDEX messages_resolved ON messages (resolved_at) WHERE state != 'pending';

    CREATE TABLE message_numbers (
        app_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        next_due REAL NOT NULL,
        PRIMARY KEY (app_id, phone)
    ) WITHOUT ROWID;
    CREATE INDEX message_numbers_by_due ON message_numbers (app_id, next_due);
    """,
)


class SchemaError(Exception):
    """The database is newer than this program (a downgrade) or not ours."""


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema to the latest version; return it."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise SchemaError(
            f"state database schema version {version} is newer than this tcsms-poller "
            f"understands ({len(MIGRATIONS)}): was it written by a newer release?"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; run the script and the version bump as one transaction.
        connection.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
        )
    return len(MIGRATIONS)
