"""Handlers against a FakeHub (tests/fakes.py): what they ask the hub to deliver, and
what they answer from its online state, without sockets or a server."""

from __future__ import annotations

import pytest
from fakes import Delivery, FakeHub, FakeLink, Kick, conversation, handler_context

from chatroom.core.model import ConvType
from chatroom.core.outbox import Priority
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import conversations, messages, session
from chatroom.service.context import SENT, Context


def login(ctx: Context, link: FakeLink, peer_id: str, **fields: object) -> pb.GenericCommand:
    cmd = pb.GenericCommand(cmd=pb.session, op=pb.open, peerId=peer_id)
    for name, value in fields.items():
        setattr(cmd.sessionMessage, name, value)
    return session.open_session(ctx, link, cmd)


async def test_a_group_message_goes_to_the_members_but_not_the_sending_session() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("g", ConvType.NORMAL, ["a", "b", "c"]))
    link = FakeLink()
    login(ctx, link, "a")
    cmd = pb.GenericCommand(cmd=pb.direct, peerId="a", i=7)
    cmd.directMessage.cid = "g"
    cmd.directMessage.msg = "hello"
    assert await messages.send(ctx, link, cmd) is SENT
    (ack,) = link.sent  # acked once stored, before the push
    assert (ack.cmd, ack.i) == (pb.ack, 7)
    (push,) = hub.deliveries
    assert push.how == "members"
    assert push.to == "g"
    assert push.skip is link.session_for("a")  # the sender's other devices do get it
    assert push.priority is Priority.RELIABLE
    assert (push.command.directMessage.msg, push.command.directMessage.fromPeerId) == (
        "hello",
        "a",
    )
    assert push.command.directMessage.id == ack.ackMessage.uid


async def test_a_transient_message_is_pushed_at_once_with_low_priority() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("g", ConvType.NORMAL, ["a", "b"]))
    link = FakeLink()
    login(ctx, link, "a")
    cmd = pb.GenericCommand(cmd=pb.direct, peerId="a")
    cmd.directMessage.cid = "g"
    cmd.directMessage.msg = "typing"
    cmd.directMessage.transient = True
    reply = await messages.send(ctx, link, cmd)
    assert reply is not None
    assert reply.cmd == pb.ack
    (push,) = hub.deliveries
    assert (push.how, push.priority) == ("members", Priority.LOW)
    assert push.command.directMessage.transient


async def test_chatroom_count_is_the_hubs_online_count() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("room", ConvType.TRANSIENT, []))
    hub.rooms["room"] = {"x", "y", "z"}  # viewers anywhere the hub reaches
    link = FakeLink()
    login(ctx, link, "a")
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.count, peerId="a")
    cmd.convMessage.cid = "room"
    reply = await conversations.count(ctx, link, cmd)
    assert reply.convMessage.count == 3


async def test_single_device_login_kicks_the_tag_and_its_token_stops_resuming() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    first, second = FakeLink(), FakeLink()
    old = login(ctx, first, "a", tag="phone")
    login(ctx, second, "a", tag="phone")
    assert hub.kicks[-1] == Kick("a", "phone", 4111, None)
    old_session = first.session_for("a")
    assert old_session is not None
    assert old_session.closed
    with pytest.raises(ChatError) as refused:
        login(ctx, FakeLink(), "a", r=True, st=old.sessionMessage.st)
    assert refused.value.code == ErrorCode.SESSION_CONFLICT


async def test_a_re_login_never_kicks_a_device_holding_the_tag() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    phone = FakeLink()
    login(ctx, phone, "a", tag="phone")
    kicks = list(hub.kicks)
    with pytest.raises(ChatError) as refused:
        login(ctx, FakeLink(), "a", tag="phone", r=True)
    assert refused.value.code == ErrorCode.SESSION_CONFLICT
    assert hub.kicks == kicks  # not asked to kick anyone
    held = phone.session_for("a")
    assert held is not None
    assert not held.closed


async def test_a_will_fires_to_the_members_when_the_session_ends_without_logout() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("g", ConvType.NORMAL, ["a", "b"]))
    link = FakeLink()
    login(ctx, link, "a")
    cmd = pb.GenericCommand(cmd=pb.direct, peerId="a")
    cmd.directMessage.cid = "g"
    cmd.directMessage.msg = "gone"
    cmd.directMessage.will = True
    await messages.send(ctx, link, cmd)
    assert hub.deliveries == []  # a will waits for the end
    live = session.disconnected(ctx, link.sessions())
    messages.send_wills(ctx, live)
    (will,) = hub.deliveries
    assert isinstance(will, Delivery)
    assert (will.how, will.to, will.command.directMessage.msg) == ("members", "g", "gone")
