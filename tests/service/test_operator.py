"""The operator link (service/operator.py): REST calls run the WebSocket handlers; only
an operator session passes the membership checks of sending and reading history, and
a subscriber's write to a system conversation stays in its thread."""

from __future__ import annotations

import pytest
from fakes import FakeHub, FakeLink, conversation, handler_context
from test_handlers_with_fake_hub import login

from chatroom.core.ids import thread_cid
from chatroom.core.model import ConvType, HistoryQuery
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import history, messages, operator


def _direct(cid: str, text: str, peer: str = "") -> pb.GenericCommand:
    cmd = pb.GenericCommand(cmd=pb.direct)
    if peer:
        cmd.peerId = peer
    cmd.directMessage.cid = cid
    cmd.directMessage.msg = text
    return cmd


async def test_the_operator_sends_as_a_non_member_after_the_commit() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("g", ConvType.NORMAL, ["a", "b"]))
    reply = await operator.run(ctx, messages.send, _direct("g", "from the backend"), "bot", 5)
    assert reply.cmd == pb.ack
    stored = await ctx.store.get_message("g", reply.ackMessage.uid)
    assert stored is not None
    assert (stored.from_peer, stored.data) == ("bot", "from the backend")
    (push,) = hub.deliveries
    assert (push.how, push.to) == ("members", "g")
    assert push.command.directMessage.fromPeerId == "bot"


async def test_a_websocket_session_is_never_an_operator() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("g", ConvType.NORMAL, ["a", "b"]))
    link = FakeLink()
    login(ctx, link, "x")
    session = link.session_for("x")
    assert session is not None
    assert not session.operator
    with pytest.raises(ChatError) as refused:
        await messages.send(ctx, link, _direct("g", "hi", "x"))
    assert refused.value.code is ErrorCode.INVALID_MESSAGING_TARGET
    logs = pb.GenericCommand(cmd=pb.logs, peerId="x")
    logs.logsMessage.cid = "g"
    with pytest.raises(ChatError) as refused:
        await history.logs(ctx, link, logs)
    assert refused.value.code is ErrorCode.CONVERSATION_LOG_REJECTED
    assert hub.deliveries == []


async def test_a_store_failure_is_an_error_not_a_hang() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("g", ConvType.NORMAL, ["a"]))

    class FailingCommitter:
        async def submit(self, message: object, callback: object) -> None:
            callback(RuntimeError("disk full"))  # type: ignore[operator]

    ctx.ports = type(ctx.ports)(FailingCommitter(), ctx.ports.journal, ctx.ports.pusher)
    with pytest.raises(ChatError) as failed:
        await operator.run(ctx, messages.send, _direct("g", "x"), "a", 5)
    assert failed.value.code is ErrorCode.INTERNAL_ERROR
    assert hub.deliveries == []


async def test_a_subscriber_writes_to_its_thread_only() -> None:
    hub = FakeHub()
    ctx = await handler_context(hub)
    await ctx.store.create_conversation(conversation("s", ConvType.SYSTEM, ["a", "b"]))
    link = FakeLink()
    login(ctx, link, "a")
    assert await messages.send(ctx, link, _direct("s", "to the operator", "a")) is not None
    (ack,) = link.sent
    assert ack.ackMessage.uid
    assert hub.deliveries == []  # pushed to no one, b included
    assert await ctx.store.query_messages(HistoryQuery("s")) == []
    (kept,) = await ctx.store.query_messages(HistoryQuery(thread_cid("s", "a")))
    assert (kept.mid, kept.data) == (ack.ackMessage.uid, "to the operator")
    # The operator does not write through `send`, it broadcasts (service/system.py).
    with pytest.raises(ChatError) as refused:
        await operator.run(ctx, messages.send, _direct("s", "x"), "a", 5)
    assert refused.value.code is ErrorCode.CONVERSATION_READ_ONLY
