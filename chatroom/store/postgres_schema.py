"""The PostgreSQL schema of ``PostgresStore`` and its versioned migrations.

The tables mirror ``sqlite_schema.py`` (same names, columns and keys, so that the SQL in
``sqlite_*.py`` runs on both); texts compare byte-wise (``COLLATE "C"``, as SQLite and
Python compare them). The version lives in ``schema_version``; ``migrate`` runs at every
start under an advisory lock, so two nodes starting at once migrate once.
"""

from __future__ import annotations

from .base import StoreError
from .common import Db

SCHEMA_VERSION = 3

_TEXT = 'TEXT COLLATE "C"'

# JSON values ordered and compared as SQLite's json_extract yields them (store/common.py
# order_value): numbers and booleans as numbers, then texts; arrays and objects as text.
_FUNCTIONS = [
    """CREATE FUNCTION chatroom_num(v jsonb) RETURNS numeric IMMUTABLE LANGUAGE sql AS $$
        SELECT CASE jsonb_typeof(v) WHEN 'number' THEN v::numeric
            WHEN 'boolean' THEN v::boolean::int END $$""",
    """CREATE FUNCTION chatroom_txt(v jsonb) RETURNS text IMMUTABLE LANGUAGE sql AS $$
        SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' END $$""",
    """CREATE FUNCTION chatroom_rank(v jsonb) RETURNS int IMMUTABLE LANGUAGE sql AS $$
        SELECT CASE jsonb_typeof(v) WHEN 'number' THEN 0 WHEN 'boolean' THEN 0
            WHEN 'string' THEN 1 WHEN 'array' THEN 1 WHEN 'object' THEN 1 END $$""",
    """CREATE FUNCTION chatroom_sort_txt(v jsonb) RETURNS text IMMUTABLE LANGUAGE sql AS $$
        SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}'
            WHEN 'array' THEN v::text WHEN 'object' THEN v::text END $$""",
]


def _name_sql(table: str) -> str:
    """The name when it is a text, as the conversations_name index has it."""
    return f"""(chatroom_txt({table}attrs_j -> 'name') COLLATE "C")"""


NAME_SQL = _name_sql("c.")

_TABLES = [
    f"""CREATE TABLE conversations (
        cid {_TEXT} PRIMARY KEY,
        kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3, 4)),
        creator {_TEXT} NOT NULL,
        members TEXT NOT NULL,
        attrs TEXT NOT NULL,
        attrs_j JSONB GENERATED ALWAYS AS (attrs::jsonb) STORED,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        is_unique INTEGER NOT NULL,
        unique_id TEXT,
        muted TEXT NOT NULL,
        last_message_at BIGINT,
        expire_at BIGINT,
        members_key TEXT
    )""",
    "CREATE INDEX conversations_unique ON conversations (members_key)"
    " WHERE members_key IS NOT NULL",
    f"""CREATE TABLE conversation_members (
        member {_TEXT} NOT NULL,
        cid {_TEXT} NOT NULL,
        PRIMARY KEY (member, cid)
    )""",
    "CREATE INDEX conversation_members_cid ON conversation_members (cid, member)",
    f"""CREATE TABLE messages (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        cid {_TEXT} NOT NULL,
        mid {_TEXT} NOT NULL,
        from_peer {_TEXT} NOT NULL,
        timestamp BIGINT NOT NULL,
        data TEXT,
        "binary" BYTEA,
        mention_all INTEGER NOT NULL,
        mention_pids TEXT,
        dedupe_token {_TEXT},
        lctype BIGINT,
        patch_timestamp BIGINT,
        CHECK ((data IS NULL) <> ("binary" IS NULL))
    )""",
    "CREATE UNIQUE INDEX messages_position ON messages (cid, timestamp, mid)",
    "CREATE UNIQUE INDEX messages_mid ON messages (cid, mid)",
    "CREATE INDEX messages_time ON messages (timestamp, mid)",  # every conversation's history
    "CREATE INDEX messages_dedupe ON messages (cid, from_peer, dedupe_token)"
    " WHERE dedupe_token IS NOT NULL",
    "CREATE INDEX messages_recent_dedupe ON messages (seq) WHERE dedupe_token IS NOT NULL",
    "CREATE INDEX messages_seq ON messages (seq)",  # commit order, for the retention sweep
    "CREATE INDEX messages_patched ON messages (patch_timestamp) WHERE patch_timestamp IS NOT NULL",
    f"""CREATE TABLE member_marks (
        peer {_TEXT} NOT NULL,
        cid {_TEXT} NOT NULL,
        unread BIGINT NOT NULL,
        mentioned INTEGER NOT NULL,
        changed_at BIGINT NOT NULL,
        acked_at BIGINT NOT NULL,
        read_at BIGINT NOT NULL,
        PRIMARY KEY (peer, cid)
    )""",
    "CREATE INDEX member_marks_changed ON member_marks (peer, changed_at)",
    "CREATE INDEX member_marks_cid ON member_marks (cid)",
    """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        max_timestamp BIGINT NOT NULL
    )""",
    "INSERT INTO meta (id, max_timestamp) VALUES (0, 0)",
    "CREATE INDEX conversations_activity ON conversations"
    " ((coalesce(last_message_at, created_at)), cid)",
    "CREATE INDEX conversations_lm ON conversations (last_message_at)",
    "CREATE INDEX conversations_created ON conversations (created_at)",
    "CREATE INDEX conversations_updated ON conversations (updated_at)",
    "CREATE INDEX conversations_creator ON conversations (creator)",
    "CREATE INDEX conversations_kind ON conversations"
    " (kind, (coalesce(last_message_at, created_at)))",
    f"CREATE INDEX conversations_name ON conversations ({_name_sql('')})",
    # the state that outlives a process (sqlite_lasting.py)
    f"""CREATE TABLE session_tokens (
        token {_TEXT} PRIMARY KEY,
        peer_id TEXT NOT NULL,
        tag TEXT,
        device_id TEXT,
        expires_at BIGINT NOT NULL,
        taken_over INTEGER NOT NULL,
        room TEXT,
        room_until BIGINT NOT NULL
    )""",
    "CREATE INDEX session_tokens_expiry ON session_tokens (expires_at)",
    f"""CREATE TABLE used_nonces (
        nonce {_TEXT} PRIMARY KEY,
        expires_at BIGINT NOT NULL
    )""",
    "CREATE INDEX used_nonces_expiry ON used_nonces (expires_at)",
    """CREATE TABLE conv_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        server_ts BIGINT NOT NULL,
        payload BYTEA NOT NULL,
        delivered TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        peer_count INTEGER NOT NULL
    )""",
    "CREATE INDEX conv_events_expiry ON conv_events (expires_at)",
    f"""CREATE TABLE conv_event_peers (
        peer {_TEXT} NOT NULL,
        server_ts BIGINT NOT NULL,
        event BIGINT NOT NULL,
        PRIMARY KEY (peer, server_ts, event)
    )""",
    "CREATE INDEX conv_event_peers_event ON conv_event_peers (event)",
    f"""CREATE TABLE pending_receipts (
        cid {_TEXT} NOT NULL,
        mid {_TEXT} NOT NULL,
        timestamp BIGINT NOT NULL,
        sender TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (cid, mid)
    )""",
    "CREATE INDEX pending_receipts_time ON pending_receipts (timestamp)",
    "CREATE INDEX pending_receipts_expiry ON pending_receipts (expires_at)",
    f"""CREATE TABLE wills (
        peer_id {_TEXT} PRIMARY KEY,
        token TEXT NOT NULL,
        payload BYTEA NOT NULL,
        expires_at BIGINT NOT NULL
    )""",
    "CREATE INDEX wills_expiry ON wills (expires_at)",
    # member moderation (sqlite_moderation.py)
    f"""CREATE TABLE member_roles (
        cid {_TEXT} NOT NULL,
        peer {_TEXT} NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (cid, peer)
    )""",
    f"""CREATE TABLE member_mutes (
        cid {_TEXT} NOT NULL,
        peer {_TEXT} NOT NULL,
        until BIGINT,
        PRIMARY KEY (cid, peer)
    )""",
    f"""CREATE TABLE member_blocks (
        cid {_TEXT} NOT NULL,
        peer {_TEXT} NOT NULL,
        since BIGINT NOT NULL,
        PRIMARY KEY (cid, peer)
    )""",
]

# Steps from version n - 1 to n; a schema change adds the next one and bumps
# SCHEMA_VERSION, and a database of any older version is brought up step by step.
STEPS: dict[int, list[str]] = {
    1: _FUNCTIONS + _TABLES,
    # Content stored before U+0000 was escaped (postgres_sql.NUL_MARK) that starts with
    # the marker: escaped now, so that it reads back as it was written.
    2: [
        "UPDATE messages SET data = chr(65535) || replace(data, chr(65535), repeat(chr(65535), 2))"
        " WHERE left(data, 1) = chr(65535)"
    ],
    # A conversation's version, which every save compares and swaps (store/common.py).
    3: ["ALTER TABLE conversations ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0"],
}

# pg_advisory_xact_lock key of migrations: "chatroom" in ASCII, as a 64-bit integer.
_LOCK_KEY = int.from_bytes(b"chatroom", "big") & (2**63 - 1)


def migrate(db: Db, where: str) -> None:
    """Create or upgrade the schema, inside the caller's transaction.

    Holds a transaction-scoped advisory lock, so that a second node starting at the
    same time waits and then finds the work done. StoreError for a database whose
    version is newer than ``SCHEMA_VERSION``, or that has tables but no version.
    """
    # A step may build indexes over a big table, and another node may be doing it: the
    # store's 10 s deadlines would be too short here (this transaction only).
    db.execute("SET LOCAL statement_timeout = '15min'")
    db.execute("SET LOCAL lock_timeout = '15min'")
    db.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    version = 0 if row is None or row[0] is None else int(row[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: schema version {version} is newer than this chatroom "
            f"understands ({SCHEMA_VERSION}); upgrade chatroom to open it"
        )
    if version == 0:
        found = db.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            " AND tablename <> 'schema_version'"
        ).fetchone()
        if found is not None and found[0]:
            raise StoreError(f"{where}: has tables but is not a chatroom database")
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in STEPS[step]:
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (step,))
