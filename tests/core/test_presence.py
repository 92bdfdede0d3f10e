"""chatroom.core.presence: who is online, and who watches which chatroom. Pure.

A client is online while it has a session; a chatroom's online count is the number of
distinct clients watching it (a user on two devices counts once); a session watches one
chatroom at a time.
"""

from __future__ import annotations

from chatroom.core.outbox import Priority
from chatroom.core.presence import Presence, PresenceStatistics, Session
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared


class NullOutlet:
    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        pass

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        pass

    def kick(self, code: int, reason: str) -> None:
        pass

    def detach(self, session: Session) -> None:
        pass


def session(peer_id: str) -> Session:
    return Session(peer_id, NullOutlet())


def test_a_client_is_online_while_any_of_its_sessions_is() -> None:
    presence = Presence()
    phone, laptop = session("alice"), session("alice")
    presence.add(phone)
    presence.add(laptop)
    assert presence.is_online("alice")
    assert presence.sessions_of("alice") == [phone, laptop]
    assert presence.statistics() == PresenceStatistics(sessions=2, clients=1, rooms=0)
    presence.remove(phone)
    assert presence.is_online("alice")
    assert presence.sessions_of("alice") == [laptop]
    presence.remove(laptop)
    assert not presence.is_online("alice")
    assert presence.sessions_of("alice") == []
    assert presence.statistics() == PresenceStatistics(sessions=0, clients=0, rooms=0)


def test_unknown_clients_are_offline() -> None:
    presence = Presence()
    presence.add(session("alice"))
    assert not presence.is_online("bob")
    assert presence.sessions_of("bob") == []


def test_sessions_of_all_skips_offline_clients() -> None:
    presence = Presence()
    a1, a2, c = session("alice"), session("alice"), session("carol")
    for s in (a1, a2, c):
        presence.add(s)
    assert list(presence.sessions_of_all(["alice", "bob", "carol"])) == [a1, a2, c]
    assert list(presence.sessions_of_all([])) == []


def test_remove_is_idempotent() -> None:
    presence = Presence()
    alice, bob = session("alice"), session("bob")
    presence.add(alice)
    presence.add(bob)
    presence.join_room("room", alice)
    presence.remove(alice)
    presence.remove(alice)
    presence.remove(session("alice"))  # never added
    assert presence.statistics() == PresenceStatistics(sessions=1, clients=1, rooms=0)
    assert presence.is_online("bob")
    assert presence.room_count("room") == 0


def test_room_count_counts_distinct_clients() -> None:
    presence = Presence()
    phone, laptop, bob = session("alice"), session("alice"), session("bob")
    for s in (phone, laptop, bob):
        presence.add(s)
    presence.join_room("room", phone)
    assert presence.room_count("room") == 1
    presence.join_room("room", laptop)
    assert presence.room_count("room") == 1  # the same user on two devices counts once
    presence.join_room("room", bob)
    assert presence.room_count("room") == 2
    assert presence.room_sessions("room") == {phone, laptop, bob}
    assert presence.in_room("room", "alice")
    presence.leave_room(phone)
    assert presence.room_count("room") == 2  # alice still watches on her laptop
    presence.leave_room(laptop)
    assert presence.room_count("room") == 1
    assert not presence.in_room("room", "alice")
    assert presence.room_sessions("room") == {bob}


def test_unknown_room_is_empty() -> None:
    presence = Presence()
    assert presence.room_count("nowhere") == 0
    assert presence.room_sessions("nowhere") == set()
    assert not presence.in_room("nowhere", "alice")


def test_joining_another_room_leaves_the_first() -> None:
    presence = Presence()
    alice = session("alice")
    presence.add(alice)
    assert presence.join_room("first", alice) is None
    assert presence.join_room("second", alice) == "first"
    assert alice.room == "second"
    assert presence.room_count("first") == 0
    assert presence.room_sessions("first") == set()
    assert presence.room_count("second") == 1
    assert presence.statistics().rooms == 1


def test_joining_the_same_room_twice_counts_once() -> None:
    presence = Presence()
    alice = session("alice")
    presence.add(alice)
    presence.join_room("room", alice)
    assert presence.join_room("room", alice) is None
    assert presence.room_count("room") == 1
    presence.leave_room(alice)
    assert presence.room_count("room") == 0


def test_leave_room_is_idempotent() -> None:
    presence = Presence()
    alice, bob = session("alice"), session("bob")
    presence.add(alice)
    presence.add(bob)
    presence.join_room("room", alice)
    presence.join_room("room", bob)
    presence.leave_room(alice)
    presence.leave_room(alice)
    assert alice.room is None
    assert presence.room_count("room") == 1


def test_remove_takes_the_session_out_of_its_room_and_cleans_up() -> None:
    presence = Presence()
    phone, laptop = session("alice"), session("alice")
    presence.add(phone)
    presence.add(laptop)
    presence.join_room("room", phone)
    presence.join_room("room", laptop)
    presence.remove(phone)
    assert presence.room_count("room") == 1
    assert presence.room_sessions("room") == {laptop}
    presence.remove(laptop)
    assert presence.room_count("room") == 0
    assert presence.room_sessions("room") == set()
    assert presence.statistics() == PresenceStatistics(sessions=0, clients=0, rooms=0)
    # The room can be used again from scratch.
    bob = session("bob")
    presence.add(bob)
    presence.join_room("room", bob)
    assert presence.room_count("room") == 1
