"""Routes each command to its handler by ``(cmd, op)``."""

from __future__ import annotations

from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import conversations, history, messages, session
from chatroom.service.context import Context, Handler, Link

# op None: the command has no op (or any op is accepted).
HANDLERS: dict[tuple[int, int | None], Handler] = {
    (pb.session, pb.open): session.open_session,
    (pb.session, pb.close): session.close_session,
    (pb.session, pb.query): session.query_online,
    (pb.session, pb.refresh): session.refresh_token,
    (pb.echo, None): session.echo,
    (pb.conv, pb.start): conversations.start,
    (pb.conv, pb.add): conversations.add,
    (pb.conv, pb.remove): conversations.remove,
    (pb.conv, pb.query): conversations.query,
    (pb.conv, pb.count): conversations.count,
    (pb.conv, pb.update): conversations.update,
    (pb.conv, pb.mute): conversations.mute,
    (pb.conv, pb.unmute): conversations.mute,
    (pb.direct, None): messages.send,
    (pb.ack, None): messages.client_ack,
    (pb.read, None): messages.read,
    (pb.logs, None): history.logs,
}


async def handle(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand | None:
    """Run the handler of ``cmd``. Raises ChatError for a command we do not serve."""
    op = cmd.op if cmd.HasField("op") else None
    handler = HANDLERS.get((cmd.cmd, op)) or HANDLERS.get((cmd.cmd, None))
    if handler is None:
        name = pb.CommandType.Name(cmd.cmd) if cmd.cmd in pb.CommandType.values() else cmd.cmd
        op_name = pb.OpType.Name(op) if op in pb.OpType.values() else op
        raise ChatError(ErrorCode.INVALID_COMMAND, f"unsupported command {name}/{op_name}")
    return await handler(ctx, link, cmd)
