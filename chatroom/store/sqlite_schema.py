"""The SQLite schema of ``SqliteStore`` and its version, kept in ``PRAGMA user_version``.

A change to the schema bumps ``SCHEMA_VERSION`` and adds a step to ``migrate`` that
upgrades a database of the previous version in place.
"""

from __future__ import annotations

import sqlite3

from .base import StoreError

SCHEMA_VERSION = 1

# STRICT tables (SQLite 3.37+) refuse values of the wrong type instead of storing them.
_STRICT = " STRICT" if sqlite3.sqlite_version_info >= (3, 37, 0) else ""

SCHEMA = [
    f"""CREATE TABLE conversations (
        cid TEXT PRIMARY KEY NOT NULL,
        kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3, 4)),
        creator TEXT NOT NULL,
        members TEXT NOT NULL,          -- JSON array, in the caller's order
        attrs TEXT NOT NULL,            -- JSON object
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        is_unique INTEGER NOT NULL,
        unique_id TEXT,
        muted TEXT NOT NULL,            -- JSON array
        last_message_at INTEGER,
        expire_at INTEGER,
        members_key TEXT                -- common.members_key, unique normal ones only
    ){_STRICT}""",
    "CREATE INDEX conversations_unique ON conversations (members_key)"
    " WHERE members_key IS NOT NULL",
    # conversations_of: one row per (member, conversation), kept in sync on every write.
    f"""CREATE TABLE conversation_members (
        member TEXT NOT NULL,
        cid TEXT NOT NULL,
        PRIMARY KEY (member, cid)
    ) WITHOUT ROWID{"," if _STRICT else ""}{_STRICT}""",
    f"""CREATE TABLE messages (
        cid TEXT NOT NULL,
        mid TEXT NOT NULL,
        from_peer TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data TEXT,
        binary BLOB,
        mention_all INTEGER NOT NULL,
        mention_pids TEXT,              -- JSON array, NULL when empty
        dedupe_token TEXT,
        lctype INTEGER,
        patch_timestamp INTEGER,
        CHECK ((data IS NULL) <> (binary IS NULL))
    ){_STRICT}""",
    # History pages and last_message: one range scan of this index per call.
    "CREATE UNIQUE INDEX messages_position ON messages (cid, timestamp, mid)",
    "CREATE UNIQUE INDEX messages_mid ON messages (cid, mid)",
    # Dedupe tokens are random UUIDs: keyed by them, every insert would land on a random
    # leaf page and commits get 2-4x slower as the table grows. Keyed by time, inserts
    # append at each sender's edge; a lookup reads that sender's tokens in the
    # conversation from the index alone (the token is in it), a rare fallback anyway.
    "CREATE INDEX messages_dedupe ON messages (cid, from_peer, timestamp, dedupe_token)"
    " WHERE dedupe_token IS NOT NULL",
    # Missed patches at login: only patched messages are in this index.
    "CREATE INDEX messages_patched ON messages (patch_timestamp) WHERE patch_timestamp IS NOT NULL",
    # Unread counts and receipts, one row per (member, conversation) that ever got a
    # message or sent an ack/read; updated by append_messages in the commit's transaction.
    f"""CREATE TABLE member_marks (
        peer TEXT NOT NULL,
        cid TEXT NOT NULL,
        unread INTEGER NOT NULL,
        mentioned INTEGER NOT NULL,
        changed_at INTEGER NOT NULL,
        acked_at INTEGER NOT NULL,
        read_at INTEGER NOT NULL,
        PRIMARY KEY (peer, cid)
    ) WITHOUT ROWID{"," if _STRICT else ""}{_STRICT}""",
    "CREATE INDEX member_marks_changed ON member_marks (peer, changed_at)",
    "CREATE INDEX member_marks_cid ON member_marks (cid)",
    # The members of one conversation, for the unread counting of every commit (the
    # primary key is by member first): without it each batch scans the whole table.
    "CREATE INDEX conversation_members_cid ON conversation_members (cid, member)",
    # max_message_timestamp without scanning every message at startup.
    f"""CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        max_timestamp INTEGER NOT NULL
    ){_STRICT}""",
    "INSERT INTO meta (id, max_timestamp) VALUES (0, 0)",
    # select_conversations: sorts and ranges on the conversation list without a scan.
    # The activity expression is written exactly as the queries write it.
    "CREATE INDEX conversations_activity ON conversations"
    " (coalesce(last_message_at, created_at), cid)",
    "CREATE INDEX conversations_lm ON conversations (last_message_at)",
    "CREATE INDEX conversations_created ON conversations (created_at)",
    "CREATE INDEX conversations_updated ON conversations (updated_at)",
    "CREATE INDEX conversations_creator ON conversations (creator)",
    "CREATE INDEX conversations_kind ON conversations"
    " (kind, coalesce(last_message_at, created_at))",
    "CREATE INDEX conversations_name ON conversations (json_extract(attrs, '$.name'))",
]


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new database, or check (later: upgrade) an existing one.

    Runs inside the caller's write transaction. StoreError for a file that has tables
    but no version (not ours), or a version newer than ``SCHEMA_VERSION``.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this chatroom "
            f"understands ({SCHEMA_VERSION}); upgrade chatroom to open it"
        )
    if version == 0:
        tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        if tables.fetchone()[0]:
            raise StoreError(f"{path}: has tables but is not a chatroom database")
        for statement in SCHEMA:
            db.execute(statement)
    # Later versions add their migration steps here, each from the previous version.
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
