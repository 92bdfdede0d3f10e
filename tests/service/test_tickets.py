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


def _tickets(expiring: list[int]) -> Tickets:
    tickets = Tickets(_Journal(), LocalHub())  # type: ignore[arg-type]
    for n, ms in enumerate(expiring):
        tickets.issue(f"t{n}", SessionTicket(f"p{n}", None, None, expires_ms=ms))
    return tickets


def test_the_oldest_found_live_are_dropped_once_the_first_of_them_expires() -> None:
    tickets = _tickets([100, 50, *range(200, 210)])
    tickets.expire(now_ms=10, at_most=8)
    assert "t1" in tickets
    tickets.expire(now_ms=50, at_most=8)
    assert "t1" not in tickets
    assert "t0" in tickets
    tickets.expire(now_ms=100, at_most=8)
    assert "t0" not in tickets


def test_an_expired_ticket_among_the_oldest_goes_once_an_older_one_is_gone() -> None:
    # A ticket restored from the store may expire before older ones: once a logout
    # (or a revocation) makes it one of the oldest, the next login drops it.
    for forget in ("pop", "revoke"):
        tickets = _tickets([100] * 8)
        tickets.restore("old", SessionTicket("p", None, None, expires_ms=5))
        tickets.expire(now_ms=10, at_most=8)
        assert "old" in tickets  # not among the 8 oldest
        getattr(tickets, forget)("t0")
        tickets.expire(now_ms=10, at_most=8)
        assert "old" not in tickets


def test_with_fewer_tickets_than_looked_at_every_one_is_looked_at() -> None:
    tickets = _tickets([100, 100])
    tickets.expire(now_ms=10, at_most=8)
    tickets.restore("old", SessionTicket("p", None, None, expires_ms=5))
    tickets.expire(now_ms=10, at_most=8)
    assert "old" not in tickets
