"""Session tickets: a few expired ones go at every login (service/caches.py)."""

from __future__ import annotations

from chatroom.core.model import SessionRecord
from chatroom.hub.local import LocalHub
from chatroom.service.caches import SessionTicket, Tickets


class _Journal:
    def __init__(self) -> None:
        self.sessions: dict[str, SessionRecord | None] = {}

    def session(self, token: str, record: SessionRecord | None) -> None:
        self.sessions[token] = record


def test_expire_drops_only_expired_among_the_oldest() -> None:
    journal = _Journal()
    tickets = Tickets(journal, LocalHub())  # type: ignore[arg-type]
    for n in range(1, 21):  # oldest first, expiring at 1 .. 20 ms
        tickets.issue(f"t{n}", SessionTicket(f"p{n}", None, None, expires_ms=n))
    assert journal.sessions["t3"] == SessionRecord("t3", "p3", None, None, 3)
    tickets.expire(now_ms=10, at_most=8)
    assert [f"t{n}" in tickets for n in (8, 9, 10, 11)] == [False, True, True, True]
    tickets.expire(now_ms=10, at_most=8)
    assert [f"t{n}" in tickets for n in (10, 11, 20)] == [False, True, True]
    tickets.expire(now_ms=10, at_most=8)
    assert tickets.get("t11") is not None
