"""The operator acting for a client: how the REST API (chatroom/http/rest) runs the very
handlers the WebSocket commands run.

A REST call becomes one command handed to the command's own handler on an
``OperatorLink``: a link with one ``operator`` session for the client the call acts as
(``from_client``, or a conversation's owner for administrative calls). The session is
never attached to the hub, so it receives no pushes, and everything else (the store,
the events online members get, the permission rules, the ack after the commit) is the
handler's. ``run`` returns the handler's reply, waiting for one a handler sends later
(a message's ack comes once its batch is committed), under a deadline.
"""

from __future__ import annotations

import inspect

import trio

from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Prepared, Subprotocol
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import SENT, Context, Handler, SyncHandler

_OPERATOR_SUBPROTOCOL = Subprotocol("operator", Codec.JSON, 3)


class OperatorLink:
    """A link whose only session acts for ``peer_id``; it keeps the first reply sent."""

    def __init__(self, peer_id: str, no_sync: bool = False) -> None:
        self.session = Session(peer_id, self, operator=True, no_sync=no_sync)
        self.reply: pb.GenericCommand | None = None
        self.replied = trio.Event()

    @property
    def subprotocol(self) -> Subprotocol:
        return _OPERATOR_SUBPROTOCOL

    def session_for(self, peer_id: str | None) -> Session | None:
        return self.session

    def attach(self, session: Session) -> None:
        """An operator session is never a login."""

    def sessions(self) -> list[Session]:
        return [self.session]

    def backlog(self) -> int:
        return 0

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        """The operator watches nothing: pushes to it are dropped."""

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        if self.reply is None:
            self.reply = cmd
            self.replied.set()

    def kick(self, code: int, reason: str) -> None:
        """There is no connection to close."""

    def detach(self, session: Session) -> None:
        """Nothing to forget."""


async def run(
    ctx: Context,
    handler: Handler | SyncHandler,
    cmd: pb.GenericCommand,
    peer_id: str,
    reply_within: float,
    *,
    no_sync: bool = False,
) -> pb.GenericCommand:
    """``handler``'s reply to ``cmd`` sent by the operator as ``peer_id``. A handler's
    ``ChatError`` propagates; so does a failed ack (its code and reason), 4201 for an id
    holding a control character, and 4200 when no reply comes in ``reply_within`` s.
    ``no_sync``: a message sent reaches none of ``peer_id``'s own sessions."""
    ids.refuse_control(cmd)
    link = OperatorLink(peer_id, no_sync)
    reply = handler(ctx, link, cmd)
    if inspect.isawaitable(reply):
        reply = await reply
    else:
        await trio.lowlevel.checkpoint()
    if reply is None:
        raise ChatError(ErrorCode.INTERNAL_ERROR, "the command has no reply")
    if reply is SENT:
        with trio.move_on_after(reply_within):
            await link.replied.wait()
        if link.reply is None:
            raise ChatError(ErrorCode.INTERNAL_ERROR, "no reply in time")
        reply = link.reply
    if reply.HasField("ackMessage") and reply.ackMessage.HasField("code"):
        raise ChatError(ErrorCode(reply.ackMessage.code), reply.ackMessage.reason or None)
    return reply
