"""Routes each command to its handler by ``(cmd, op)``."""

from __future__ import annotations

from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import (
    conv_events,
    conv_query,
    conversations,
    history,
    messages,
    moderation,
    patches,
    receipts,
    session,
)
from chatroom.service.context import Context, Handler, Link, SyncHandler

# Keys are (cmd, op); op None: the command has no op (or any op is accepted).
SYNC_HANDLERS: dict[tuple[int, int | None], SyncHandler] = {
    (pb.session, pb.refresh): session.refresh_token,
    (pb.echo, None): session.echo,
}
HANDLERS: dict[tuple[int, int | None], Handler] = {
    (pb.session, pb.open): conv_events.replaying(session.open_and_sync),
    (pb.session, pb.query): session.query_online,
    (pb.session, pb.close): session.close_session,
    (pb.ack, None): receipts.client_ack,
    (pb.read, None): receipts.read,
    (pb.conv, pb.max_read): receipts.max_read,
    (pb.patch, pb.modify): patches.modify,
    (pb.conv, pb.start): conversations.start,
    (pb.conv, pb.add): conversations.add,
    (pb.conv, pb.remove): conversations.remove,
    (pb.conv, pb.query): conv_query.query,
    (pb.conv, pb.count): conversations.count,
    (pb.conv, pb.update): conversations.update,
    (pb.conv, pb.mute): conversations.mute,
    (pb.conv, pb.unmute): conversations.mute,
    (pb.direct, None): messages.send,
    (pb.logs, None): history.logs,
    (pb.conv, pb.member_info_update): moderation.update_role,
    (pb.conv, pb.add_shutup): moderation.shutup,
    (pb.conv, pb.remove_shutup): moderation.shutup,
    (pb.conv, pb.query_shutup): moderation.query_shutup,
    (pb.conv, pb.check_shutup): moderation.check_shutup,
    (pb.blacklist, pb.block): moderation.blacklist,
    (pb.blacklist, pb.unblock): moderation.blacklist,
    (pb.blacklist, pb.query): moderation.blacklist,
    (pb.blacklist, pb.check_block): moderation.blacklist,
}


def _routes() -> dict[tuple[int, int | None], tuple[SyncHandler | None, Handler | None]]:
    """Both tables as one, looked up once a command: what a ``(cmd, op)`` gets, a
    synchronous handler before an asynchronous one and one for any op of its command
    (key ``(cmd, None)``) before an asynchronous one for that op."""
    routes: dict[tuple[int, int | None], tuple[SyncHandler | None, Handler | None]] = {
        key: (None, handler) for key, handler in HANDLERS.items()
    }
    routes.update((key, (sync, None)) for key, sync in SYNC_HANDLERS.items())
    for command, op in list(routes):
        any_op = SYNC_HANDLERS.get((command, None))
        if op is not None and any_op is not None:
            routes[command, op] = (any_op, None)
    return routes


ROUTES = _routes()


def route(cmd: pb.GenericCommand, control: str | None) -> tuple[SyncHandler | None, Handler | None]:
    """``(sync_handler, None)`` or ``(None, async_handler)`` for ``cmd``, whose
    identifier field ``control`` (``codec.decode_checked``) holds a control character
    if not None. A command the server does not serve, or one with such an identifier,
    gets a sync handler that answers 4201."""
    if not cmd.HasField("cmd"):
        # An unknown cmd number parses as absent, which would read as 0 (session).
        return _UNSUPPORTED
    return route_present(cmd.cmd, cmd, control)


def route_present(
    command: int, cmd: pb.GenericCommand, control: str | None
) -> tuple[SyncHandler | None, Handler | None]:
    """``route`` for a ``cmd`` known to have its ``cmd`` field, ``command``."""
    if control is not None:
        return _REFUSE_IDS
    if cmd.HasField("op"):
        found = ROUTES.get((command, cmd.op)) or ROUTES.get((command, None))
    else:
        found = ROUTES.get((command, None))
    return found or _UNSUPPORTED


def refuse_ids(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand | None:
    """An identifier holds a control character: 4201, before any store sees it."""
    ids.refuse_control(cmd)
    return None


def unsupported(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand | None:
    op = cmd.op if cmd.HasField("op") else None
    name = pb.CommandType.Name(cmd.cmd) if cmd.HasField("cmd") else "?"
    op_name = pb.OpType.Name(op) if op in pb.OpType.values() else op
    raise ChatError(ErrorCode.INVALID_COMMAND, f"unsupported command {name}/{op_name}")


_UNSUPPORTED: tuple[SyncHandler | None, Handler | None] = (unsupported, None)
_REFUSE_IDS: tuple[SyncHandler | None, Handler | None] = (refuse_ids, None)
