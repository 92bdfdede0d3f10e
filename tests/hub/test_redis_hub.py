"""chatroom.hub.redis and its pure parts, without Redis: two RedisHubs whose queued
records the test carries from one to the other, as the link would."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fakes import Recorder

from chatroom.core.model import Conversation, ConvType, Message
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.hub import redis_wire as wire
from chatroom.hub.redis import SHARED_FOR, RedisHub
from chatroom.hub.redis_queue import KEEP, Outgoing
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Prepared, told_priority
from chatroom.protocol.roomlog import RoomLog

PUSH = Prepared(pb.GenericCommand(cmd=pb.direct, serverTs=1))


def node(name: str) -> RedisHub:
    hub = RedisHub(name, queue=4)
    hub.connected = True
    return hub


def online(hub: RedisHub, peer: str, tag: str | None = None) -> tuple[Session, Recorder]:
    outlet = Recorder()
    session = Session(peer, outlet, tag=tag, token=f"st-{hub.node}-{peer}-{tag}")
    hub.attach(session)
    return session, outlet


def carry(source: RedisHub, *targets: RedisHub, now: float = 0.0) -> int:
    """Deliver what ``source`` queued (and its presence events) to the hubs whose
    channels they were published on; the number of PUBLISHes that would be."""
    seq, events = source.view.take_events()
    published = [(e.channel, e.record) for e in source.outgoing.take()]
    if events:
        record = wire.encode({"k": "d", "n": source.node, "q": seq, "e": events})
        published.append((source.channel("presence"), record))
    for channel, record in published:
        for target in targets:
            hears = {target.channel("node", target.node), target.channel("presence")}
            hears |= {target.channel("room", cid) for cid in target.subscribed}
            if channel in hears:
                target.receive(record, now)
    return len(published)


def join(hub: RedisHub, cid: str, session: Session) -> None:
    hub.join_room(cid, session)
    hub.subscribed = hub.local_rooms()  # what the link does once subscribed


def chatroom(cid: str) -> Conversation:
    return Conversation(cid, ConvType.TRANSIENT, "a", [], {}, created_at=0, updated_at=0)


def test_presence_crosses_nodes_and_counts_distinct_clients() -> None:
    a, b = node("A"), node("B")
    host, _ = online(a, "host")
    phone, _ = online(b, "v", "phone")
    laptop, _ = online(b, "v", "laptop")
    join(a, "room", host)
    join(b, "room", phone)
    join(b, "room", laptop)
    carry(a, b)
    carry(b, a)
    assert a.online_count("room") == b.online_count("room") == 2  # v counts once
    assert a.is_online("v")
    assert a.in_room("room", "v")
    assert a.online_of(["nobody", "v", "host"]) == ["v", "host"]
    assert a.holds_tag("v", "phone")
    assert not a.holds_tag("v", "tablet")
    b.detach(phone)
    b.detach(laptop)
    carry(b, a)
    assert a.online_count("room") == 1
    assert not a.is_online("v")


def test_a_chatroom_push_is_one_publish_for_every_viewer_of_every_node() -> None:
    a, b = node("A"), node("B")
    host, host_out = online(a, "host")
    join(a, "room", host)
    viewers = [online(b, f"v{i}") for i in range(3)]
    for session, _ in viewers:
        join(b, "room", session)
    carry(b, a)
    carry(a, b)
    assert a.to_members(PUSH, chatroom("room"), Priority.HIGH, skip=host) == 3
    assert len(a.outgoing) == 1
    assert carry(a, a, b) == 1
    for i, (_, out) in enumerate(viewers):
        [(prepared, peer, priority)] = out.pushed
        assert (prepared.command, peer, priority) == (PUSH.command, f"v{i}", Priority.HIGH)
    assert host_out.pushed == []  # skipped, on its own node too


def test_a_push_to_clients_is_one_publish_per_node_holding_them() -> None:
    a, b, c = node("A"), node("B"), node("C")
    _, alice = online(a, "alice")
    _, bob = online(b, "bob")
    _, bob2 = online(b, "bob", "tablet")
    _, carol = online(c, "carol")
    for hub in (a, b, c):
        carry(hub, a, b, c)
    members = ["alice", "bob", "carol", "offline"]
    conv = Conversation("g", ConvType.NORMAL, "a", members, {}, created_at=0, updated_at=0)
    assert a.to_members(PUSH, conv) == 4
    assert carry(a, a, b, c) == 3  # nodes A (itself, for one order), B and C
    assert [len(o.pushed) for o in (alice, bob, bob2, carol)] == [1, 1, 1, 1]


def test_a_push_to_clients_heard_back_skips_the_sender_session_only() -> None:
    a, b = node("A"), node("B")
    phone, phone_out = online(a, "alice", "phone")
    _, laptop_out = online(a, "alice", "laptop")
    _, bob_out = online(b, "bob")
    carry(a, a, b)
    carry(b, a, b)
    assert a.to_clients(PUSH, ["alice", "bob"], skip=phone) == [
        "st-A-alice-laptop",
        "st-B-bob-None",
    ]
    assert len(a.outgoing) == 2  # nodes A (itself) and B: nothing delivered yet
    assert laptop_out.pushed == []
    carry(a, a, b)
    assert phone_out.pushed == []  # the sender's own session, named by its token
    assert [peer for _, peer, _ in laptop_out.pushed] == ["alice"]
    assert [peer for _, peer, _ in bob_out.pushed] == ["bob"]
    a.detach(phone)  # its token names nothing any more: the hub forgot it
    assert a.to_clients(PUSH, ["alice"], skip=phone) == ["st-A-alice-laptop"]
    carry(a, a, b)
    assert len(laptop_out.pushed) == 2


def test_alone_or_cut_off_a_node_delivers_what_it_can_at_once() -> None:
    a = node("A")
    a.connected = False
    _, out = online(a, "alice")
    assert a.to_client(PUSH, "alice") == 1
    assert out.pushed == [(PUSH, "alice", Priority.RELIABLE)]
    assert len(a.outgoing) == 0


def test_single_device_login_kicks_the_session_on_the_other_node() -> None:
    a, b = node("A"), node("B")
    old, old_out = online(a, "dana", "mobile")
    carry(a, b)
    new, _ = online(b, "dana", "mobile")
    assert b.kick("dana", "mobile", 4111, "SESSION_CONFLICT", "another device", new) == [old.token]
    carry(b, a)
    assert old.closed
    assert [(c.cmd, c.op, c.sessionMessage.code) for c in old_out.sent] == [
        (pb.session, pb.closed, 4111)
    ]
    carry(a, b)
    assert b.is_online("dana")
    assert not b.holds_tag("dana", "mobile", keep=new)


def test_a_new_will_voids_the_one_held_on_another_node() -> None:
    a, b = node("A"), node("B")
    first, _ = online(a, "erin")
    carry(a, b)
    second, _ = online(b, "erin")
    first.will = pb.DirectCommand(cid="c", msg="old")
    b.register_will(second, pb.DirectCommand(cid="c", msg="new"))
    carry(b, a)
    assert a.take_will(first) is None
    assert b.take_will(second) is not None


def test_malformed_records_are_counted_and_change_nothing() -> None:
    a = node("A")
    _, out = online(a, "alice")
    for junk in (b"", b"\x00\x00", b"\x00\x00\x00\x01\x00\x00\x00\x02{}", b"\xff" * 12):
        a.receive(junk, 0.0)
    good = wire.push_record({"k": "p", "to": ["alice"]}, PUSH, Priority.RELIABLE, None)
    a.receive(good + b"\x00\x00\x00\x09", 0.0)  # a good record, then a torn one
    a.receive(wire.encode({"k": "p"}), 0.0)  # no recipients field
    header = wire.head({"k": "p", "to": ["alice"], "p": 1, "s": None}, 1)
    a.receive(wire.record(header, (b"\xff\xff\xff",)), 0.0)  # a body that is no command
    assert a.bad_records >= 5
    assert len(out.pushed) == 1
    assert a.is_online("alice")


def test_a_gap_in_presence_events_asks_for_the_snapshot() -> None:
    a, b = node("A"), node("B")
    online(b, "x")
    carry(b, a)
    assert a.is_online("x")
    online(b, "y")
    b.view.take_events()  # lost on the way
    online(b, "z")
    carry(b, a)
    assert a.resync_wanted == {"B"}
    assert not a.is_online("z")
    a.view.load("B", b.view.seq, b.snapshot(), 1.0)
    assert a.online_of(["x", "y", "z"]) == ["x", "y", "z"]
    a.receive(wire.encode({"k": "h", "n": "B", "q": b.view.seq + 5}), 2.0)
    assert a.resync_wanted == {"B"}  # a heartbeat ahead of the view: reload again


def test_a_silent_node_is_dropped_from_the_view() -> None:
    a, b = node("A"), node("B")
    online(b, "x")
    carry(b, a, now=10.0)
    assert a.view.silent(14.0, 5.0) == []
    assert a.view.silent(16.0, 5.0) == ["B"]
    a.view.drop("B")
    assert not a.is_online("x")


def test_the_queue_sheds_chatroom_normal_first_and_never_high() -> None:
    queue = Outgoing(3)
    assert queue.offer("r", b"n1", Priority.NORMAL)
    assert queue.offer("r", b"h1", Priority.HIGH)
    assert queue.offer("r", b"l1", Priority.LOW)
    assert not queue.offer("r", b"n2", Priority.NORMAL)  # full: a sheddable one is dropped
    assert queue.offer("r", b"h2", Priority.HIGH)  # makes room: the oldest sheddable goes
    assert queue.offer("p", b"reliable", Priority.RELIABLE)
    assert [e.record for e in queue.take()] == [b"h1", b"h2", b"reliable"]
    assert (queue.shed, queue.lost) == (3, 0)
    for n in range(3):
        queue.offer("p", bytes([n]), Priority.RELIABLE)
    assert not queue.offer("p", b"x", Priority.HIGH)  # nothing left to shed: lost, counted
    assert queue.lost == 1
    assert queue.drop_all() == 3
    assert queue.lost == 4


def test_a_push_heard_back_reuses_the_sent_object_and_others_decode_it() -> None:
    a, b = node("A"), node("B")
    local, local_out = online(a, "near")
    remote, remote_out = online(b, "far")
    join(a, "room", local)
    join(b, "room", remote)
    carry(a, b)
    carry(b, a)
    assert a.to_room(PUSH, "room", Priority.LOW) == 2
    assert local_out.pushed == []  # through Redis, for one order on every node
    carry(a, a, b)
    [(mine, _, _)] = local_out.pushed
    [(theirs, _, priority)] = remote_out.pushed
    assert mine is PUSH  # encoded once, not decoded again
    assert theirs.command == PUSH.command
    assert priority is Priority.LOW


def test_a_node_that_says_goodbye_is_forgotten_at_once_and_for_good() -> None:
    a, b = node("A"), node("B")
    online(b, "x")
    carry(b, a)
    b.farewell()
    online(b, "late")  # an event that a shutdown may still send after its goodbye
    carry(b, a)
    assert a.view.nodes() == []
    assert a.online_of(["x", "late"]) == []
    a.receive(wire.encode({"k": "h", "n": "B", "q": 99}), 1.0)
    assert a.resync_wanted == set()
    assert a.view.farewells == 1


def test_two_logins_with_one_tag_on_two_nodes_at_once_leave_only_the_later() -> None:
    a, b = node("A"), node("B")
    for hub in (a, b):
        hub.exclusive = lambda tag: tag != "default"
    first, first_out = online(a, "dana", "mobile")
    second, second_out = online(b, "dana", "mobile")  # before node B heard of the first
    same_tag_elsewhere, _ = online(b, "erin", "default")
    online(a, "erin", "default")
    kicked: list[str] = []
    a.on_kicked = kicked.extend
    # Redis orders node A's events first, then node B's; every node hears both.
    carry(a, a, b)
    carry(b, a, b)
    assert first.closed
    assert [(c.op, c.sessionMessage.code) for c in first_out.sent] == [(pb.closed, 4111)]
    assert kicked == [first.token]
    assert not second.closed
    assert second_out.sent == []
    assert not same_tag_elsewhere.closed  # the reserved tag is not exclusive
    carry(a, a, b)
    assert [s.tag for s in b.view.presence.sessions_of("dana")] == ["mobile"]


def said(cid: str, text: str) -> tuple[Prepared, Message]:
    cmd = pb.GenericCommand(cmd=pb.direct)
    cmd.directMessage.cid = cid
    cmd.directMessage.msg = text
    return Prepared(cmd), Message(cid, f"mid-{text}", "host", 1, text)


def published_and_kept(hub: RedisHub) -> tuple[list[str], list[str]]:
    """The texts of what ``hub`` would publish to chatrooms and keep in their lists."""
    live: list[str] = []
    kept: list[str] = []
    for entry in hub.outgoing.take():
        if entry.op == KEEP:
            kept.append(str(wire.unkept(entry.record).data))
        else:
            for record in wire.decode(entry.record):
                assert isinstance(record, wire.Record)
                live.append(record.prepared().command.directMessage.msg)
    return live, kept


def test_a_chatroom_message_is_kept_and_published_or_shed_together() -> None:
    # Node A's queue holds 4 records. A chatroom message is two: its KEEP (the room's
    # recent messages in Redis) and its PUBLISH; a transient one (typing...) is one, a
    # PUBLISH. Whatever the queue sheds, a message is either both live and in the
    # history, or neither.
    a, b = node("A"), node("B")
    host, _ = online(a, "host")
    viewer, _ = online(b, "viewer")
    join(b, "room", viewer)
    carry(b, a)

    def send(text: str, priority: Priority, transient: bool = False) -> None:
        prepared, message = said("room", text)
        if not transient:
            a.keep(message, priority)
        a.to_room(prepared, "room", priority, host)

    send("typing", Priority.NORMAL, transient=True)
    send("m1", Priority.NORMAL)
    send("m2", Priority.NORMAL)  # its KEEP fills the queue: its PUBLISH does not fit
    assert published_and_kept(a) == (["typing", "m1"], ["m1"])
    send("m3", Priority.NORMAL)
    send("m4", Priority.NORMAL)
    send("alert", Priority.HIGH, transient=True)  # makes room: the oldest NORMAL goes
    assert published_and_kept(a) == (["m4", "alert"], ["m4"])
    assert a.outgoing.shed == 4  # m2's two records, m3's two


def host_and_guest(here: str, there: str) -> tuple[RedisHub, RedisHub, Session, Session]:
    """Nodes A and B, each knowing the other's presence, with nothing queued: "host" on
    A in chatroom ``here``, "guest" on B in chatroom ``there``."""
    a, b = node("A"), node("B")
    host, _ = online(a, "host")
    guest, _ = online(b, "guest")
    join(a, here, host)
    join(b, there, guest)
    carry(a, b)
    carry(b, a)
    a.outgoing.take()
    return a, b, host, guest


def test_only_a_rooms_records_its_node_reads_back_may_wait_for_its_next_flush() -> None:
    # A node's viewers of a room it is subscribed to read its messages from Redis,
    # at the node's next flush: those records (the message and its KEEP) may wait
    # for that flush (redis_link.py). A room with no viewer here, a push to clients,
    # anything else queued with them: the queue leaves at once.
    a, _, host, _ = host_and_guest("here", "there")
    for cid in ("here", "there"):
        prepared, message = said(cid, "m")
        a.keep(message, Priority.NORMAL)
        a.to_room(prepared, cid, Priority.NORMAL, host)
        assert a.outgoing.patient is (cid == "here")
        a.outgoing.take()
        assert a.outgoing.patient  # an empty queue
    a.to_room(said("here", "m")[0], "here", Priority.NORMAL, host)
    a.to_clients(PUSH, ["guest"])
    assert len(a.outgoing) == 2
    assert not a.outgoing.patient


def test_a_room_that_other_nodes_send_to_as_well_is_never_held() -> None:
    # Held, each node's own senders' messages would wait for its pause, and the other
    # node's viewers for that pause and then their own: a room with senders on several
    # nodes publishes at once, until no other node has sent to it for SHARED_FOR
    # seconds (by the clock of what this node hears).
    a, b, host, guest = host_and_guest("room", "room")

    def patient() -> bool:
        a.to_room(said("room", "m")[0], "room", Priority.NORMAL, host)
        held = a.outgoing.patient
        a.outgoing.take()
        return held

    assert patient()
    b.to_room(said("room", "hi")[0], "room", Priority.NORMAL, guest)
    carry(b, a, now=10.0)
    assert not patient()
    b.to_clients(PUSH, ["host"])  # anything else heard from Redis moves A's clock
    carry(b, a, now=10.0 + SHARED_FOR)
    assert not patient()
    b.to_clients(PUSH, ["host"])
    carry(b, a, now=10.5 + SHARED_FOR)
    assert patient()


def test_a_publish_that_waited_for_its_senders_flush_says_so_to_every_node() -> None:
    # A held PUBLISH ends with wire.PACED (net/redis_link.py): the node that hears it
    # delivers its records as any, and notes that the read is to be written at once
    # (its reader passes that on to the flusher). A PUBLISH without it leaves that as is.
    a, b, host, _ = host_and_guest("room", "room")
    viewer, out = online(b, "viewer")
    join(b, "room", viewer)
    carry(b, a)
    for text, paced in (("m1", False), ("m2", True)):
        a.to_room(said("room", text)[0], "room", Priority.NORMAL, host)
        data = b"".join(e.record for e in a.outgoing.take())
        b.receive(data + wire.PACED if paced else data, 0.0)
        assert out.pushed[-1][0].command.directMessage.msg == text
        assert b.paced is paced
    assert b.bad_records == 0


def test_a_push_heard_back_after_it_was_forgotten_is_still_delivered_once() -> None:
    # A node holds the pushes it sent until they come back (a bounded number of them);
    # one that comes back after it was forgotten is read from the record instead.
    a = node("A")  # holds 4
    host, _ = online(a, "host")
    viewer, out = online(a, "viewer")
    join(a, "room", viewer)
    published = []
    for n in range(6):
        a.to_room(said("room", f"m{n}")[0], "room", Priority.HIGH, host)
        published += [e.record for e in a.outgoing.take()]
    assert out.pushed == []  # the room's pushes here wait for Redis's order
    for record in published:
        a.receive(record, 0.0)
    assert [p.command.directMessage.msg for p, _, _ in out.pushed] == [f"m{n}" for n in range(6)]


class RoomRecorder(Recorder):
    """An outlet that also keeps the frame log each chatroom push came with."""

    def __init__(self) -> None:
        super().__init__()
        self.rooms: list[RoomLog[Any] | None] = []

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        super().push(prepared, peer_id, priority)
        self.rooms.append(prepared.room)


def test_a_node_tells_its_flusher_how_many_viewers_of_a_room_other_nodes_write() -> None:
    a, b = node("A"), node("B")
    outlet = RoomRecorder()
    here = [Session(f"h{i}", outlet, token=f"st-A-h{i}") for i in range(2)]
    for session in here:
        a.attach(session)
        join(a, "room", session)
    there = [online(b, f"v{i}")[0] for i in range(6)]
    for session in there:
        join(b, "room", session)
    carry(a, b)
    carry(b, a)
    a.to_members(PUSH, chatroom("room"), Priority.HIGH, skip=None)
    carry(a, a)  # heard back: delivered to A's two viewers
    log = outlet.rooms[-1]
    assert log is not None
    assert a.elsewhere(log) == 3.0  # six on B for two here: one node would write 8
    for session in there:
        b.detach(session)
    carry(b, a)
    assert a.elsewhere(log) == 0.0  # alone again: its own cycles


def test_a_stamped_record_is_the_record_of_its_head_and_bodies() -> None:
    head = wire.head({"k": "r", "c": "room", "p": 1, "s": None}, 1)
    source = wire.origin("node-a")
    for echo, body in ((0, b""), (7, b"x" * 300), (0xFFFF_FFFF, b"\x00body")):
        stamped = wire.stamp(head, 1, source)((body,), echo)
        assert stamped == wire.record(head, (body,), source, echo)
        assert list(wire.heard(stamped, source, {echo})) == [echo]  # its sender's own
    two = wire.head({"k": "r", "c": "room", "p": 1, "s": None}, 2)
    bodies = (b"proto", b"json-only")
    assert wire.stamp(two, 2, source)(bodies, 3) == wire.record(two, bodies, source, 3)
    [record] = wire.decode(wire.stamp(two, 2, b"\x00")(bodies, 0))
    assert isinstance(record, wire.Record)
    assert record.bodies == bodies


def test_json_only_fields_reach_another_nodes_json_viewers() -> None:
    told = Prepared(pb.GenericCommand(cmd=pb.direct, serverTs=1), told_priority(1))
    other = Prepared(pb.GenericCommand(cmd=pb.direct, serverTs=2), pb.GenericCommand(i=9))
    heard = []
    for sent in (told, other):
        header: wire.Header = {"k": "r", "c": "room"}
        [record] = wire.decode(wire.push_record(header, sent, Priority.HIGH, None))
        assert isinstance(record, wire.Record)
        heard.append(record.prepared())
    assert orjson.loads(heard[0].payload(Codec.JSON, "v")) == {
        "peerId": "v",
        "cmd": "direct",
        "serverTs": 1,
        "priority": 1,
    }
    assert heard[0].json_only is told_priority(1)  # shared, not parsed again
    assert orjson.loads(heard[1].payload(Codec.JSON, None))["i"] == 9
    assert heard[1].payload(Codec.PROTOBUF, None) == other.payload(Codec.PROTOBUF, None)


def test_a_body_longer_than_its_record_is_refused() -> None:
    for bodies in ((b"body",), (b"proto", b"body")):
        head = wire.head({"k": "r", "c": "room", "p": 1, "s": None}, len(bodies))
        record = bytearray(wire.record(head, bodies))
        record[-8:-4] = (5).to_bytes(4, "big")  # the last body's length, one too many
        with pytest.raises(wire.WireError):
            list(wire.decode(bytes(record)))


def test_records_of_one_publish_keep_each_its_header_when_some_share_one() -> None:
    room = wire.head({"k": "r", "c": "room", "p": 1, "s": None}, 1)
    other = wire.head({"k": "r", "c": "other", "p": 2, "s": "t"}, 1)
    heads = (room, room, other, room)
    published = b"".join(wire.record(head, (b"%d" % n,)) for n, head in enumerate(heads))
    records = list(wire.decode(published))
    assert [(r.header["c"], r.header["p"], r.bodies) for r in records] == [
        ("room", 1, (b"0",)),
        ("room", 1, (b"1",)),
        ("other", 2, (b"2",)),
        ("room", 1, (b"3",)),
    ]
