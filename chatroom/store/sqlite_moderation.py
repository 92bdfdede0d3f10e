"""Member moderation in SQL, for SQLite and PostgreSQL alike: roles, mutes and blocks
(``chatroom/core/roles.py``).

One table each, keyed by ``(cid, peer)``; a conversation's whole state is read at once
(``moderation_of``) and changed in one transaction (``save_moderation``). The tables
come with schema version 3 (``sqlite_schema.MODERATION_SCHEMA``).
"""

from __future__ import annotations

from chatroom.core.roles import Moderation, ModerationChanges, Role

from .common import Db

ROLES_SQL = "SELECT peer FROM member_roles WHERE cid = ? AND role = 'Manager'"
MUTES_SQL = "SELECT peer, until FROM member_mutes WHERE cid = ?"
BLOCKS_SQL = "SELECT peer, since FROM member_blocks WHERE cid = ?"


def load(db: Db, cid: str, begin: str = "BEGIN") -> Moderation:
    """The conversation's state, read in one read transaction (three SELECTs) that
    ``begin`` starts."""
    db.execute(begin)  # one snapshot for the three reads
    try:
        managers = {row[0] for row in db.execute(ROLES_SQL, (cid,)).fetchall()}
        muted = {row[0]: row[1] for row in db.execute(MUTES_SQL, (cid,)).fetchall()}
        blocked = {row[0]: row[1] for row in db.execute(BLOCKS_SQL, (cid,)).fetchall()}
    finally:
        db.execute("COMMIT")  # a pooled reader never keeps an old snapshot
    return Moderation(managers, muted, blocked)


def save(db: Db, cid: str, changes: ModerationChanges) -> None:
    """Apply ``changes`` (inside the caller's transaction)."""
    managers = [(cid, p) for p, role in changes.roles.items() if role is Role.MANAGER]
    others = [(cid, p) for p, role in changes.roles.items() if role is not Role.MANAGER]
    db.executemany(
        "INSERT INTO member_roles (cid, peer, role) VALUES (?, ?, 'Manager')"
        " ON CONFLICT (cid, peer) DO UPDATE SET role = excluded.role",
        managers,
    )
    db.executemany("DELETE FROM member_roles WHERE cid = ? AND peer = ?", others)
    db.executemany(
        "INSERT INTO member_mutes (cid, peer, until) VALUES (?, ?, ?)"
        " ON CONFLICT (cid, peer) DO UPDATE SET until = excluded.until",
        [(cid, p, until) for p, until in changes.muted.items()],
    )
    db.executemany(
        "DELETE FROM member_mutes WHERE cid = ? AND peer = ?", [(cid, p) for p in changes.unmuted]
    )
    db.executemany(
        "INSERT INTO member_blocks (cid, peer, since) VALUES (?, ?, ?)"
        " ON CONFLICT (cid, peer) DO NOTHING",
        [(cid, p, since) for p, since in changes.blocked.items()],
    )
    db.executemany(
        "DELETE FROM member_blocks WHERE cid = ? AND peer = ?",
        [(cid, p) for p in changes.unblocked],
    )
