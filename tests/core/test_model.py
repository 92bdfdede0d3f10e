"""Plain records of core/model.py."""

from __future__ import annotations

from dataclasses import astuple

from chatroom.core.model import SessionRecord


def test_session_record_state_rebuilds_the_record() -> None:
    record = SessionRecord("tok", "alice", "phone", "dev1", 5, True, "room1", 7)
    assert record.state() == list(astuple(record))
    assert SessionRecord(*record.state()) == record  # type: ignore[arg-type]
