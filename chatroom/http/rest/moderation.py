"""Moderation over REST (rest-and-hooks.md 2.2-2.3): permanent mutes
(``permanent-silenceds``), blacklists, member roles (``member-infos``) and the push
mutes of conversations (``mutes``).

Each call runs the WebSocket moderation command's handler (service/moderation.py) as
the conversation's owner, so the same events reach the members, the same limits apply
(``moderation_batch`` ids a call, the list caps) and the same per-id refusals come back,
here as ``failed: [{code, error, client_ids}]`` beside LeanCloud's documented reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from chatroom.core.model import JSON, Conversation
from chatroom.core.roles import Role
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import conversations, moderation, permissions
from chatroom.service.context import Handler

from .base import ApiError, Call, Spec
from .conversations import conversation_in, owner_of, with_failures

_PAGE = {"limit": "integer", "next": "string"}
_IDS = {"client_ids": "array!"}
_ROLES = {role.value for role in Role}
_MAX_SILENCE = 24 * 3600  # seconds of a temporary silence, as LeanCloud documents
_Body = pb.ConvCommand | pb.BlacklistCommand


def _ids(call: Call) -> list[str]:
    return call.params.clients("client_ids", call.ctx, call.ctx.config.moderation_batch)


def _page(call: Call, body: _Body) -> None:
    body.limit = call.params.integer("limit", 10, 1, 100)
    after = call.params.text("next")
    if after:
        body.next = after


def _listed(ids: list[str], after: str) -> JSON:
    out: dict[str, JSON] = {"client_ids": list(ids)}
    if after:
        out["next"] = after
    return out


_Op: TypeAlias = pb.OpType.ValueType


@dataclass(frozen=True)
class _IdList:
    """A list of client ids the owner keeps on a conversation, a batch at a time: the
    permanent mutes (``conv`` commands, ids in ``m``) or the blacklist (``blacklist``
    commands, ids in ``toPids``, the list in ``blockedPids``)."""

    path: str
    ops: tuple[_Op, _Op, _Op]  # add, remove, query
    change: Handler
    query: Handler
    summaries: tuple[str, str, str]

    def command(self, op: _Op, cid: str) -> tuple[pb.GenericCommand, _Body]:
        if self.path == "blacklists":
            cmd = pb.GenericCommand(cmd=pb.blacklist, op=op)
            cmd.blacklistMessage.srcCid = cid
            return cmd, cmd.blacklistMessage
        cmd = pb.GenericCommand(cmd=pb.conv, op=op)
        cmd.convMessage.cid = cid
        return cmd, cmd.convMessage

    def specs(self, family: str) -> list[Spec]:
        path = f"/{family}/{{cid}}/{self.path}"
        add, remove, query = self.ops

        async def change(call: Call, op: _Op) -> JSON:
            conv = await conversation_in(call, family)
            cmd, body = self.command(op, conv.cid)
            (body.m if isinstance(body, pb.ConvCommand) else body.toPids).extend(_ids(call))
            return with_failures({}, await call.run(self.change, cmd, owner_of(conv)))

        async def adding(call: Call) -> JSON:
            return await change(call, add)

        async def removing(call: Call) -> JSON:
            return await change(call, remove)

        async def listing(call: Call) -> JSON:
            conv = await conversation_in(call, family)
            cmd, body = self.command(query, conv.cid)
            _page(call, body)
            reply = await call.run(self.query, cmd, owner_of(conv))
            if isinstance(body, pb.ConvCommand):
                return _listed(list(reply.convMessage.m), reply.convMessage.next)
            listed = reply.blacklistMessage
            return _listed(list(listed.blockedPids), listed.next)

        adds, removes, lists = self.summaries
        return [
            Spec(path, ("POST",), adding, adds, _IDS),
            Spec(path, ("DELETE",), removing, removes, _IDS),
            Spec(path, ("GET",), listing, lists, query=_PAGE),
        ]


_SILENCED = _IdList(
    "permanent-silenceds",
    (pb.add_shutup, pb.remove_shutup, pb.query_shutup),
    moderation.shutup,
    moderation.query_shutup,
    ("Mute members until unmuted", "Unmute members", "The muted members, a page at a time"),
)
_BLACKLIST = _IdList(
    "blacklists",
    (pb.block, pb.unblock, pb.query),
    moderation.blacklist,
    moderation.blacklist,
    (
        "Block clients (members are removed)",
        "Unblock clients",
        "The blocked clients, a page at a time",
    ),
)


def _temporary(family: str) -> list[Spec]:
    """A mute with a duration (``ttl`` seconds, at most a day): the client's sends get
    4315 until it ends or is lifted."""
    path = f"/{family}/{{cid}}/temporary-silenceds"

    async def change(call: Call, until: int | None) -> JSON:
        conv = await conversation_in(call, family)
        client = call.params.client("client_id", call.ctx)
        result: dict[str, JSON] = {}

        def answer(kept: list[str], refused: permissions.Refusals) -> None:
            if refused:
                result["failed"] = [
                    {"code": int(code), "error": reason, "client_ids": list(ids)}
                    for (code, reason), ids in refused.items()
                ]

        muting = until is not None
        await moderation.change_mutes(
            call.ctx, conv, owner_of(conv), [client], muting, until, answer
        )
        return result

    async def silence(call: Call) -> JSON:
        ttl = call.params.integer("ttl", -1, 1, _MAX_SILENCE)
        return await change(call, call.ctx.clock.wall_ms() + ttl * 1000)

    async def lift(call: Call) -> JSON:
        return await change(call, None)

    body = {"client_id": "string!", "ttl": "integer!"}
    return [
        Spec(path, ("POST",), silence, "Mute a member for ttl seconds", body),
        Spec(path, ("DELETE",), lift, "Lift a temporary mute", query={"client_id": "string!"}),
    ]


async def member_infos(call: Call, conv: Conversation) -> list[dict[str, JSON]]:
    """The role rows of a conversation: the owner and its managers (the others are
    members), as ``_ConversationMemberInfo`` rows."""
    state = await permissions.state_of(call.ctx, conv.cid)
    rows = [_row(conv, conv.creator, Role.OWNER)]
    rows.extend(_row(conv, m, Role.MANAGER) for m in sorted(state.managers) if m in conv.members)
    return rows


def _row(conv: Conversation, client: str, role: Role) -> dict[str, JSON]:
    return {"clientId": client, "role": role.value, "cid": conv.cid, "objectId": client}


def _roles(family: str) -> list[Spec]:
    path = f"/{family}/{{cid}}/member-infos"

    async def set_role(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        params = call.params
        client = params.client("clientId" if "clientId" in params.values else "client_id", call.ctx)
        role = params.text("role", required=True)
        if role not in _ROLES:
            raise ApiError(400, "role is Member or Manager", 4321)
        cmd = pb.GenericCommand(cmd=pb.conv, op=pb.member_info_update)
        body = cmd.convMessage
        body.cid = conv.cid
        body.targetClientId = body.info.pid = client
        body.info.role = role or ""
        await call.run(moderation.update_role, cmd, owner_of(conv))
        return {"objectId": client}

    async def query(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        rows = await member_infos(call, conv)
        wanted = call.params.text("role")
        results: list[JSON] = [r for r in rows if wanted in (None, r["role"])]
        return {"results": results}

    fields = {"clientId": "string", "client_id": "string", "role": "string!"}
    return [
        Spec(path, ("POST",), set_role, "Make a member a manager, or a member again", fields),
        Spec(path, ("GET",), query, "The owner and managers", query={"role": "string"}),
    ]


async def _push_mute(call: Call, muting: bool) -> JSON:
    """Each client mutes (or unmutes) the conversation's offline pushes for itself; all
    must be members (else 4317 and nothing changes)."""
    conv = await conversation_in(call, "conversations")
    clients = _ids(call)
    strangers = [c for c in clients if c not in conv.members]
    if strangers:
        raise ChatError(ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED, detail=strangers[0])
    for client in clients:
        cmd = pb.GenericCommand(cmd=pb.conv, op=pb.mute if muting else pb.unmute)
        cmd.convMessage.cid = conv.cid
        await call.run(conversations.mute, cmd, client)
    return {"objectId": conv.cid}


async def push_mute(call: Call) -> JSON:
    return await _push_mute(call, muting=True)


async def push_unmute(call: Call) -> JSON:
    return await _push_mute(call, muting=False)


async def push_muted(call: Call) -> JSON:
    conv = await conversation_in(call, "conversations")
    return {"result": list(conv.muted)}


_MUTES = "/conversations/{cid}/mutes"
SPECS = [
    *(s for f in ("conversations", "chatrooms") for s in _SILENCED.specs(f)),
    *(s for f in ("conversations", "chatrooms") for s in _temporary(f)),
    *(s for f in ("conversations", "chatrooms") for s in _BLACKLIST.specs(f)),
    *(s for f in ("conversations", "chatrooms") for s in _roles(f)),
    Spec(_MUTES, ("POST",), push_mute, "Turn offline pushes off for members", _IDS),
    Spec(_MUTES, ("DELETE",), push_unmute, "Turn them on again", _IDS),
    Spec(_MUTES, ("GET",), push_muted, "Who turned them off"),
]
