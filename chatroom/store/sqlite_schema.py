"""The SQLite schema of ``SqliteStore`` and its version, kept in ``PRAGMA user_version``.

A change to the schema bumps ``SCHEMA_VERSION`` and adds a step to ``migrate`` that
upgrades a database of the previous version in place.
"""

from __future__ import annotations

import sqlite3

from .base import StoreError

SCHEMA_VERSION = 5

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


_WITHOUT_ROWID = f" WITHOUT ROWID{',' if _STRICT else ''}{_STRICT}"

# Version 2: the state that outlives a process (Store.save_lasting). Every table has an
# expiry column with an index, which purge_expired deletes by.
LASTING_SCHEMA = [
    f"""CREATE TABLE session_tokens (
        token TEXT PRIMARY KEY NOT NULL,
        peer_id TEXT NOT NULL,
        tag TEXT,
        device_id TEXT,
        expires_at INTEGER NOT NULL,
        taken_over INTEGER NOT NULL,
        room TEXT,
        room_until INTEGER NOT NULL
    ){_WITHOUT_ROWID}""",
    "CREATE INDEX session_tokens_expiry ON session_tokens (expires_at)",
    f"""CREATE TABLE used_nonces (
        nonce TEXT PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL
    ){_WITHOUT_ROWID}""",
    "CREATE INDEX used_nonces_expiry ON used_nonces (expires_at)",
    # One row per event, one index row per concerned client: an event of a 500-member
    # group stores its payload once. peer_count (its rows in conv_event_peers) lets
    # purge_expired bound the rows it deletes in one transaction, not just the events.
    f"""CREATE TABLE conv_events (
        id INTEGER PRIMARY KEY,
        server_ts INTEGER NOT NULL,
        payload BLOB NOT NULL,
        delivered TEXT NOT NULL,        -- JSON array of session tokens
        expires_at INTEGER NOT NULL,
        peer_count INTEGER NOT NULL
    ){_STRICT}""",
    "CREATE INDEX conv_events_expiry ON conv_events (expires_at)",
    f"""CREATE TABLE conv_event_peers (
        peer TEXT NOT NULL,
        server_ts INTEGER NOT NULL,
        event INTEGER NOT NULL,
        PRIMARY KEY (peer, server_ts, event)
    ){_WITHOUT_ROWID}""",
    "CREATE INDEX conv_event_peers_event ON conv_event_peers (event)",
    f"""CREATE TABLE pending_receipts (
        cid TEXT NOT NULL,
        mid TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        sender TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (cid, mid)
    ){_WITHOUT_ROWID}""",
    "CREATE INDEX pending_receipts_time ON pending_receipts (timestamp)",
    "CREATE INDEX pending_receipts_expiry ON pending_receipts (expires_at)",
    f"""CREATE TABLE wills (
        peer_id TEXT PRIMARY KEY NOT NULL,
        token TEXT NOT NULL,
        payload BLOB NOT NULL,
        expires_at INTEGER NOT NULL
    ){_WITHOUT_ROWID}""",
    "CREATE INDEX wills_expiry ON wills (expires_at)",
]

# Version 3: member moderation (sqlite_moderation.py): managers, mutes (``until`` NULL:
# until lifted) and blocks, each keyed by conversation then member.
MODERATION_SCHEMA = [
    f"""CREATE TABLE member_roles (
        cid TEXT NOT NULL,
        peer TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (cid, peer)
    ){_WITHOUT_ROWID}""",
    f"""CREATE TABLE member_mutes (
        cid TEXT NOT NULL,
        peer TEXT NOT NULL,
        until INTEGER,
        PRIMARY KEY (cid, peer)
    ){_WITHOUT_ROWID}""",
    f"""CREATE TABLE member_blocks (
        cid TEXT NOT NULL,
        peer TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (cid, peer)
    ){_WITHOUT_ROWID}""",
]

# Version 4: the history of every conversation by time (the REST API's GET /messages),
# one range of this index per page.
TIME_INDEX = ["CREATE INDEX messages_time ON messages (timestamp, mid)"]

# Version 5: a conversation's version, which every save compares and swaps (several
# nodes may save one conversation at once).
CONV_VERSION = ["ALTER TABLE conversations ADD COLUMN version INTEGER NOT NULL DEFAULT 0"]

# Steps from version n - 1 to n, applied in order to a database of an older version.
_STEPS: dict[int, list[str]] = {
    2: LASTING_SCHEMA,
    3: MODERATION_SCHEMA,
    4: TIME_INDEX,
    5: CONV_VERSION,
}


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new database, or upgrade an existing one in place.

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
        version = 1
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _STEPS[step]:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
