"""The hook points: what each hook is sent and what its reply changes (rest-and-hooks.md
§3.3; docs/hooks.md). The calls themselves go through ``ctx.ports.hooks``.

- ``_messageReceived`` runs before a message of a normal or temporary conversation is
  stored (``hold_message``): it may drop it (4402 with the hook's ``code`` as
  ``appCode`` and ``detail`` as ``appMsg``), replace its content (the sender then gets a
  ``patch/modify`` with the new content) or replace ``toPeers``, the members it is
  pushed to. The wait happens in the hook runner's nursery, not in the connection:
  the sender's other requests, and every other conversation, go on meanwhile; the
  messages of one sender to one conversation still go out in the order sent.
- ``_messageUpdate`` runs before an edit or a recall: it may drop it (4405) or replace
  an edit's content.
- Conversation before-hooks (``_conversationStart/Add/Remove/Update``) may refuse
  with 4305 (``reject``, ``code``, ``detail``); ``_conversationUpdate`` may replace ``attr``.
- ``_receiversOffline`` chooses the offline push (``offline_push``).
- Notifications (``_messageSent``, ``...ed``, ``_clientOnline/Offline``) are queued.

A hook whose call fails and whose policy is ``refuse`` refuses with the same code.
Chatrooms (transient conversations) call no message hook: a live room's rate would
make every message wait on the operator.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
import trio

from chatroom.core import hooks as names
from chatroom.core.hooks import HookFailed, peer_list, refusal
from chatroom.core.model import JSON, Conversation, ConvType, Message, Patch
from chatroom.core.presence import Session
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import SENT, Context, Link, failure_reply

_REJECTED = ErrorCode.MESSAGE_REJECTED_BY_APP

# What a message continues with once its hook answered: the message (maybe rewritten),
# the members to push it to (None: all) and whether the content changed.
Accept = Callable[[Message, list[str] | None, bool], Awaitable[pb.GenericCommand]]


def source_ip(link: object) -> str | None:
    remote = getattr(link, "remote", None)  # the connection's peer address, if it has one
    if not isinstance(remote, str):
        return None
    host = remote.rpartition(":")[0]
    return host or None


async def _ask(
    ctx: Context, name: str, params: dict[str, JSON], code: ErrorCode
) -> dict[str, JSON]:
    try:
        return await ctx.ports.hooks.call(name, params)
    except HookFailed as exc:
        raise ChatError(code, f"hook {name} failed", detail=exc.why) from None


def _refuse_if(result: dict[str, JSON], flag: str, name: str, code: ErrorCode) -> None:
    refused = refusal(result, flag)
    if refused is not None:
        raise ChatError(code, f"refused by {name}", refused.detail or None, refused.app_code)


# -- _messageReceived -------------------------------------------------------------------


def wants_message_hook(ctx: Context, conv: Conversation) -> bool:
    return conv.kind is not ConvType.TRANSIENT and ctx.ports.hooks.wants(names.MESSAGE_RECEIVED)


def _content(message: Message | Patch) -> tuple[str, bool]:
    if message.binary is not None:
        return base64.b64encode(message.binary).decode(), True
    return message.data or "", False


def hold_message(
    ctx: Context,
    link: Link,
    cmd: pb.GenericCommand,
    session: Session,
    conv: Conversation,
    message: Message,
    accept: Accept,
) -> None:
    """Ask ``_messageReceived`` in the background, then ``accept`` and reply."""
    key = (session.peer_id, conv.cid)
    order = ctx.caches.hook_order
    waiting = order.waiting.get(session.peer_id, 0)
    if waiting >= order.MAX_WAITING:  # the reader never waits: this bounds the tasks
        raise ChatError(ErrorCode.MESSAGE_SENT_QUOTA_EXCEEDED, "too many messages waiting")
    order.waiting[session.peer_id] = waiting + 1
    previous = order.tails.get(key)
    mine = order.tails[key] = trio.Event()  # taken now: tasks may start in any order
    content, binary = _content(message)
    params: dict[str, JSON] = {
        "fromPeer": message.from_peer,
        "convId": conv.cid,
        "toPeers": [m for m in conv.members if m != message.from_peer],
        "transient": cmd.directMessage.transient,
        "bin": binary,
        "content": content,
        "receipt": cmd.directMessage.r,
        "timestamp": message.timestamp,
        "system": conv.kind is ConvType.SYSTEM,
        "sourceIP": source_ip(link),
    }

    async def continued() -> None:  # noqa: ASYNC910 - every path awaits the hook
        try:
            try:
                result = await _ask(ctx, names.MESSAGE_RECEIVED, params, _REJECTED)
                _refuse_if(result, "drop", names.MESSAGE_RECEIVED, _REJECTED)
                changed = _rewritten(message, result, binary)
                to_peers = peer_list(result, "toPeers")
                if to_peers is not None:
                    to_peers = [p for p in to_peers if p in conv.members]
                if previous is not None:
                    await previous.wait()
                reply = await accept(changed or message, to_peers, changed is not None)
            except ChatError as err:
                reply = failure_reply(cmd, err)
            if reply is not SENT:
                if cmd.HasField("i"):
                    reply.i = cmd.i
                link.send(reply)
        finally:
            mine.set()
            if order.tails.get(key) is mine:
                del order.tails[key]
            left = order.waiting.pop(session.peer_id) - 1
            if left:
                order.waiting[session.peer_id] = left

    ctx.ports.hooks.start_soon(continued)


_Content = TypeVar("_Content", Message, Patch)


def _rewritten(
    message: _Content, result: dict[str, JSON], was_binary: bool, code: ErrorCode = _REJECTED
) -> _Content | None:
    """The message (or edit) with the reply's ``content`` (base64 when ``bin``), or None."""
    content = result.get("content")
    if not isinstance(content, str):
        return None
    binary = result.get("bin", was_binary)
    if binary is True:
        try:
            raw = base64.b64decode(content, validate=True)
        except binascii.Error:
            raise ChatError(code, "hook content is not base64") from None
        return dataclasses.replace(message, data=None, binary=raw, lctype=None)
    return dataclasses.replace(message, data=content, binary=None)  # lctype: the caller's


def message_sent(
    ctx: Context, conv: Conversation, message: Message, to: list[str], transient: bool
) -> None:
    """``_messageSent`` after the pushes (``to``: who it was for)."""
    if not ctx.ports.hooks.wants(names.MESSAGE_SENT):
        return
    online = ctx.hub.online_of(to)
    content, binary = _content(message)
    ctx.ports.hooks.notify(
        names.MESSAGE_SENT,
        {
            "fromPeer": message.from_peer,
            "convId": conv.cid,
            "msgId": message.mid,
            "onlinePeers": list(online),
            "offlinePeers": [p for p in to if p not in set(online)],
            "transient": transient,
            "system": conv.kind is ConvType.SYSTEM,
            "bin": binary,
            "content": content,
            "timestamp": message.timestamp,
        },
    )


# -- _messageUpdate ----------------------------------------------------------------------


async def message_update(
    ctx: Context, link: Link, conv: Conversation, original: Message, patch: Patch, recall: bool
) -> Patch | None:
    """Ask ``_messageUpdate`` before an edit or a recall is applied: 4405 when it drops
    it; the edit with the hook's ``content`` (its ``lctype`` still to set), or None when
    unchanged. A recall's content cannot be replaced."""
    if not ctx.ports.hooks.wants(names.MESSAGE_UPDATE):
        return None  # noqa: ASYNC910 - no hook, no wait: the handler awaits elsewhere
    content, binary = _content(original if recall else patch)
    params: dict[str, JSON] = {
        "fromPeer": original.from_peer,
        "convId": conv.cid,
        "toPeers": [m for m in conv.members if m != original.from_peer],
        "bin": binary,
        "content": content,
        "timestamp": original.timestamp,
        "msgId": original.mid,
        "sourceIP": source_ip(link),
        "recall": recall,
        "system": conv.kind is ConvType.SYSTEM,
    }
    code = ErrorCode.MESSAGE_UPDATE_REJECTED_BY_APP
    result = await _ask(ctx, names.MESSAGE_UPDATE, params, code)
    _refuse_if(result, "drop", names.MESSAGE_UPDATE, code)
    return None if recall else _rewritten(patch, result, binary, code)


# -- _receiversOffline --------------------------------------------------------------------


def offline_push(
    ctx: Context,
    message: Message,
    offline: list[str],
    muted: list[str],
    payload: JSON,
    offer: Callable[[list[str], JSON], None],
) -> None:
    """Offer the push for ``offline`` members now, or once ``_receiversOffline`` says
    who gets which payload (``skip``, ``offlinePeers``, ``pushMessage``, ``force``:
    ``muted`` members too). A failed hook leaves the default push."""
    if not ctx.ports.hooks.wants(names.RECEIVERS_OFFLINE):
        if offline and payload is not None:
            offer(offline, payload)
        return
    everyone = [*offline, *muted]
    if not everyone:
        return
    mentioned = [p for p in everyone if p in message.mention_pids]
    content, _ = _content(message)
    params: dict[str, JSON] = {
        "fromPeer": message.from_peer,
        "convId": message.cid,
        "offlinePeers": list(offline),
        "content": content,
        "timestamp": message.timestamp,
        "mentionAll": message.mention_all,
        "mentionOfflinePeers": list([] if message.mention_all else mentioned),
    }

    async def asked() -> None:  # noqa: ASYNC910 - the hook's call is awaited
        try:
            result = await ctx.ports.hooks.call(names.RECEIVERS_OFFLINE, params)
        except HookFailed:
            result = {}  # a push is best effort: nothing to refuse
        if result.get("skip"):
            return  # noqa: ASYNC910 - after the hook's call
        pool = everyone if result.get("force") is True else offline
        chosen = peer_list(result, "offlinePeers")
        to = [p for p in chosen if p in pool] if chosen is not None else pool
        push_message = result.get("pushMessage")
        chosen_payload = _push_payload(push_message) if push_message is not None else payload
        if to and chosen_payload is not None:
            offer(to, chosen_payload)

    ctx.ports.hooks.start_soon(asked)


def _push_payload(value: JSON) -> JSON:
    """``pushMessage``: an object, or (as the docs' examples) its JSON text."""
    if isinstance(value, str):
        try:
            parsed: JSON = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"alert": value}
        return parsed if isinstance(parsed, dict) else {"alert": value}
    return value if isinstance(value, dict) else None


# -- conversations -------------------------------------------------------------------------

_CONV_REJECTED = ErrorCode.CONVERSATION_REJECTED_BY_APP


async def conversation_before(ctx: Context, name: str, params: dict[str, JSON]) -> dict[str, JSON]:
    """A conversation before-hook: its reply, or 4305 when it rejects (or fails and
    refuses). ``{}`` at once when the hook is not configured."""
    if not ctx.ports.hooks.wants(name):
        return {}  # noqa: ASYNC910 - no hook, no wait: the handler awaits elsewhere
    result = await _ask(ctx, name, params, _CONV_REJECTED)
    _refuse_if(result, "reject", name, _CONV_REJECTED)
    return result


def notify(ctx: Context, name: str, params: dict[str, JSON]) -> None:
    """A notification hook, queued (nothing when it is not configured)."""
    ctx.ports.hooks.notify(name, params)


# -- clients --------------------------------------------------------------------------------

# closeCode of _clientOffline
LOGGED_OUT, CONNECTION_LOST, KICKED_BY_TAG, KICKED_BY_API = 1, 2, 3, 4


def client_online(ctx: Context, session: Session, reconnect: bool) -> None:
    if not ctx.ports.hooks.wants(names.CLIENT_ONLINE):
        return  # no hook: its parameters are not made at every login
    params: dict[str, JSON] = {
        "peerId": session.peer_id,
        "sourceIP": source_ip(session.outlet),
        "tag": session.tag or "default",
        "reconnect": 1 if reconnect else 0,
    }
    notify(ctx, names.CLIENT_ONLINE, params)


def client_offline(
    ctx: Context, peer_id: str, tag: str | None, close_code: int, close_msg: str, link: object
) -> None:
    """``_clientOffline``; ``link`` gives ``sourceIP`` (None: the connection is gone)."""
    params: dict[str, JSON] = {
        "peerId": peer_id,
        "closeCode": close_code,
        "closeMsg": close_msg,
        "tag": tag or "default",
    }
    if link is not None:
        params["sourceIP"] = source_ip(link)
    notify(ctx, names.CLIENT_OFFLINE, params)
