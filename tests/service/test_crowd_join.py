"""A crowd joining one chatroom (issue 15): what each join asks of the store and of
the scheduler (chatroom/service/conversations.py ``add``, service/permissions.py
``state_of``)."""

from __future__ import annotations

import pytest
import trio
from fakes import FakeHub, FakeLink, conversation, handler_context

from chatroom.core.model import ConvType
from chatroom.core.roles import Moderation
from chatroom.protocol import messages_pb2 as pb
from chatroom.service import conversations, session
from chatroom.service.context import Context


def login(ctx: Context, peer_id: str) -> FakeLink:
    link = FakeLink()
    session.open_session(ctx, link, pb.GenericCommand(cmd=pb.session, op=pb.open, peerId=peer_id))
    return link


def join_command(cid: str, peer_id: str) -> pb.GenericCommand:
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.add, peerId=peer_id, i=1)
    cmd.convMessage.cid = cid
    cmd.convMessage.m.append(peer_id)
    return cmd


def count_moderation_reads(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = ctx.store.moderation_of

    async def counted(cid: str) -> Moderation:
        reads.append(cid)
        return await read(cid)

    monkeypatch.setattr(ctx.store, "moderation_of", counted)
    return reads


async def test_a_crowd_joining_a_room_not_in_memory_reads_its_moderation_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    # Stored before this process knew of it (a restart): its moderation is not in memory.
    await ctx.store.create_conversation(conversation("room", ConvType.TRANSIENT, []))
    reads = count_moderation_reads(ctx, monkeypatch)
    crowd = [f"viewer{k}" for k in range(20)]
    links = {peer: login(ctx, peer) for peer in crowd}
    replies: dict[str, pb.GenericCommand] = {}

    async def join(peer: str) -> None:
        replies[peer] = await conversations.add(ctx, links[peer], join_command("room", peer))

    async with trio.open_nursery() as nursery:
        for peer in crowd:
            nursery.start_soon(join, peer)
    assert reads == ["room"]
    assert {peer: list(reply.convMessage.allowedPids) for peer, reply in replies.items()} == {
        peer: [peer] for peer in crowd
    }
    assert hub.rooms["room"] == set(crowd)


async def test_the_first_viewers_of_a_new_chatroom_do_not_read_its_moderation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    reads = count_moderation_reads(ctx, monkeypatch)
    owner = login(ctx, "owner")
    start = pb.GenericCommand(cmd=pb.conv, op=pb.start, peerId="owner", i=1)
    start.convMessage.transient = True
    started = await conversations.start(ctx, owner, start)
    cid = started.convMessage.cid
    reply = await conversations.add(ctx, login(ctx, "viewer"), join_command(cid, "viewer"))
    assert list(reply.convMessage.allowedPids) == ["viewer"]
    assert reads == []


async def test_joining_a_room_held_in_memory_needs_no_reschedule() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("room", ConvType.TRANSIENT, []))
    await conversations.add(ctx, login(ctx, "first"), join_command("room", "first"))
    # Everything the next join needs is in memory now: it completes at its first step.
    join = conversations.add(ctx, login(ctx, "second"), join_command("room", "second"))
    with pytest.raises(StopIteration) as done:
        join.send(None)
    assert list(done.value.value.convMessage.allowedPids) == ["second"]
    assert hub.rooms["room"] == {"first", "second"}
