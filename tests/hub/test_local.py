"""chatroom.hub.local: LocalHub routes pushes to this process's sessions. Pure: the
sessions' outlets record what they get."""

from __future__ import annotations

from fakes import Recorder

from chatroom.core.model import Conversation, ConvType
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.hub.base import HubStatistics
from chatroom.hub.local import LocalHub
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared


def online(hub: LocalHub, peer_id: str, tag: str | None = None) -> tuple[Session, Recorder]:
    outlet = Recorder()
    session = Session(peer_id, outlet, tag=tag, token=f"st-{peer_id}-{tag}")
    hub.attach(session)
    return session, outlet


def conversation(kind: ConvType, members: list[str], cid: str = "c1") -> Conversation:
    return Conversation(cid, kind, "a", members, {}, created_at=0, updated_at=0)


PUSH = Prepared(pb.GenericCommand(cmd=pb.direct))


def test_members_get_a_push_on_every_device_but_the_skipped_session() -> None:
    hub = LocalHub()
    phone, phone_out = online(hub, "a", "phone")
    _, laptop_out = online(hub, "a", "laptop")
    _, b_out = online(hub, "b")
    _, stranger = online(hub, "z")
    conv = conversation(ConvType.NORMAL, ["a", "b", "offline"])
    assert hub.to_members(PUSH, conv, skip=phone) == 2
    assert phone_out.pushed == []
    assert stranger.pushed == []
    assert laptop_out.pushed == [(PUSH, "a", Priority.RELIABLE)]
    assert b_out.pushed == [(PUSH, "b", Priority.RELIABLE)]
    assert hub.statistics() == HubStatistics(sessions=4, clients=3, rooms=0, deliveries=2)


def test_a_chatroom_reaches_its_viewers_not_its_member_list() -> None:
    hub = LocalHub()
    viewer, viewer_out = online(hub, "v")
    _, member_out = online(hub, "m")
    hub.join_room("room", viewer)
    room = conversation(ConvType.TRANSIENT, ["m"], cid="room")
    assert hub.to_members(PUSH, room, Priority.LOW) == 1
    assert viewer_out.pushed == [(PUSH, "v", Priority.LOW)]
    assert member_out.pushed == []
    assert hub.to_room(PUSH, "room", skip=viewer) == 0


def test_online_count_counts_clients_not_devices_and_leave_takes_every_device() -> None:
    hub = LocalHub()
    phone, _ = online(hub, "a", "phone")
    laptop, _ = online(hub, "a", "laptop")
    other, _ = online(hub, "b")
    for s in (phone, laptop, other):
        hub.join_room("room", s)
    assert hub.online_count("room") == 2
    hub.leave_room("room", "a")
    assert (phone.room, laptop.room, hub.online_count("room")) == (None, None, 1)
    hub.detach(other)
    assert hub.online_count("room") == 0
    assert other.closed
    assert not hub.is_online("b")


def test_online_queries() -> None:
    hub = LocalHub()
    phone, _ = online(hub, "a", "phone")
    assert hub.online_of(["x", "a", "y"]) == ["a"]
    assert not hub.others_online(phone)
    online(hub, "a", "laptop")
    assert hub.others_online(phone)
    assert hub.holds_tag("a", "laptop")
    assert not hub.holds_tag("a", "phone", keep=phone)


def test_to_clients_names_the_sessions_it_reached() -> None:
    hub = LocalHub()
    a, _ = online(hub, "a")
    online(hub, "b")
    assert hub.to_clients(PUSH, ["a", "b", "gone"], skip=a) == ["st-b-None"]


def test_kick_closes_the_sessions_holding_the_tag_and_keeps_the_connection() -> None:
    hub = LocalHub()
    old, old_out = online(hub, "a", "phone")
    laptop, laptop_out = online(hub, "a", "laptop")
    new, new_out = online(hub, "a", "phone")
    kicked = hub.kick("a", "phone", 4111, "SESSION_CONFLICT", "another device", keep=new)
    assert kicked == [old.token]
    (closed,) = old_out.sent
    assert (closed.cmd, closed.op, closed.peerId) == (pb.session, pb.closed, "a")
    assert closed.sessionMessage.code == 4111
    assert closed.sessionMessage.reason == "SESSION_CONFLICT"
    assert old_out.detached == [old]
    assert old.closed
    assert laptop_out.sent == []
    assert new_out.sent == []
    assert not laptop.closed
    assert hub.to_client(PUSH, "a") == 2


def test_one_will_per_client_the_last_set_wins() -> None:
    hub = LocalHub()
    phone, _ = online(hub, "a", "phone")
    laptop, _ = online(hub, "a", "laptop")
    first, second = pb.DirectCommand(msg="bye 1"), pb.DirectCommand(msg="bye 2")
    hub.register_will(phone, first)
    hub.register_will(laptop, second)
    assert hub.take_will(phone) is None
    hub.detach(laptop)
    assert hub.take_will(laptop) is second
    assert hub.take_will(laptop) is None  # fired once
    hub.register_will(phone, first)
    hub.cancel_will(phone)
    assert hub.take_will(phone) is None
