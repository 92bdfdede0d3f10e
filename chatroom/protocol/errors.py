"""Error codes sent to clients, and WebSocket close codes.

Codes and names are LeanCloud's (the JS SDK's ``src/error.js``, protocol.md section 4.16),
so the official SDKs map them to the errors they document. Two kinds of failure exist:

- ``ChatError``: a request failed; the reply is ``error{code, reason}`` (or, for
  ``direct``, an ``ack`` carrying the code) and the connection stays open.
- ``CloseCode``: the connection ends. Codes 4100, 4103 and 4110 are *terminal*: the
  SDK does not reconnect. Every other code, 4xxx included, makes it reconnect with
  back-off, which is what a slow consumer or a restarting server wants.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Request error codes (``ErrorCommand.code`` / ``AckCommand.code``)."""

    APP_NOT_AVAILABLE = 4100
    SIGNATURE_FAILED = 4102
    INVALID_LOGIN = 4103
    SESSION_REQUIRED = 4105
    READ_TIMEOUT = 4107
    LOGIN_TIMEOUT = 4108
    FRAME_TOO_LONG = 4109
    INVALID_ORIGIN = 4110
    SESSION_CONFLICT = 4111
    SESSION_TOKEN_EXPIRED = 4112
    APP_QUOTA_EXCEEDED = 4113  # over the connection's ``requests_per_second``
    KICKED_BY_APP = 4115  # the operator kicked the client (POST /1.2/rtm/clients/{id}/kick)
    # over the sender's ``user_messages_per_second`` (all its connections) or the
    # chatroom's ``room_messages_per_second``
    MESSAGE_SENT_QUOTA_EXCEEDED = 4116
    INTERNAL_ERROR = 4200
    # not LeanCloud's: a frame that is not a command we understand, or an invalid
    # argument (an id holding a control character; over REST a 400 with this code)
    INVALID_COMMAND = 4201
    CONVERSATION_API_FAILED = 4301
    CONVERSATION_SIGNATURE_FAILED = 4302
    CONVERSATION_NOT_FOUND = 4303
    CONVERSATION_FULL = 4304
    CONVERSATION_REJECTED_BY_APP = 4305
    CONVERSATION_UPDATE_FAILED = 4306  # bad attribute key; attrs or name over their limit
    CONVERSATION_READ_ONLY = 4307
    # Also the moderation refusals, told apart by their reason (``Reason``):
    # CONVERSATION_OPERATION_UNAUTHORIZED (the caller's role may not do it: mute, block,
    # change roles, kick from a chatroom, add/remove others when member_changes_by is
    # managers), CONVERSATION_NEED_OWNER (the owner cannot be removed or quit) and
    # CONVERSATION_MEMBER_SHUTUP (a muted member's send).
    CONVERSATION_NOT_ALLOWED = 4308
    CONVERSATION_UPDATE_REJECTED = 4309
    CONVERSATION_QUERY_FAILED = 4310  # conv/query: bad or too large where/sort/skip, refused $regex
    CONVERSATION_LOG_FAILED = 4311
    CONVERSATION_LOG_REJECTED = 4312
    SYSTEM_CONVERSATION_REQUIRED = 4313
    NORMAL_CONVERSATION_REQUIRED = 4314
    # a blocked client joining, being added, or sending (per id in add replies)
    CONVERSATION_BLACKLISTED = 4315
    TRANSIENT_CONVERSATION_REQUIRED = 4316
    # count/mute/unmute by a non-member (of a chatroom: one not watching it, unless
    # owner or manager); moderation commands by a non-member
    CONVERSATION_MEMBERSHIP_REQUIRED = 4317
    CONVERSATION_API_QUOTA_EXCEEDED = 4318
    TEMPORARY_CONVERSATION_EXPIRED = 4323
    INVALID_MESSAGING_TARGET = 4401
    MESSAGE_REJECTED_BY_APP = 4402
    MESSAGE_OWNERSHIP_REQUIRED = 4403
    MESSAGE_NOT_FOUND = 4404
    MESSAGE_UPDATE_REJECTED_BY_APP = 4405
    MESSAGE_EDIT_DISABLED = 4406
    MESSAGE_RECALL_DISABLED = 4407
    BLACKLIST_SIGNATURE_FAILED = 4546  # block/unblock unsigned with ``signatures = "blacklist"``
    # member_info_update asking for the role Owner: the creator stays the only owner
    OWNER_PROMOTION_NOT_ALLOWED = 5130


class Reason(enum.StrEnum):
    """Reasons LeanCloud gives to moderation refusals (code 4308), sent as
    ``ErrorCommand.reason``: the SDK shows the reason as the error's message, and its
    partial-success results (``failures[].message``) carry it per client id."""

    OPERATION_UNAUTHORIZED = "CONVERSATION_OPERATION_UNAUTHORIZED"
    NEED_OWNER = "CONVERSATION_NEED_OWNER"
    MEMBER_SHUTUP = "CONVERSATION_MEMBER_SHUTUP"


# Reasons of a 4200 when the store failed (PostgreSQL unreachable): nothing was stored,
# the client may try again. A message's ack says the first.
NOT_STORED = "message could not be stored"
STORE_FAILED = "store unavailable, try again"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses. Reasons stay under 123 bytes."""

    NORMAL = 1000  # logout of the last session, or the client closed
    GOING_AWAY = 1001  # graceful shutdown, after ``goaway``
    PROTOCOL_ERROR = 1002  # a WebSocket framing error (closed by the WS layer)
    UNSUPPORTED_DATA = 1003  # hint only: undecodable frames get error 4201, not a close
    MESSAGE_TOO_BIG = 1009  # inbound frame over ``max_frame_bytes`` (closed by the WS layer)
    INTERNAL_ERROR = 1011  # a bug: logged, this connection only
    APP_NOT_AVAILABLE = 4100  # terminal: wrong appId when one is configured
    INVALID_LOGIN = 4103  # terminal
    READ_TIMEOUT = 4107  # reconnectable: nothing received for ``idle_timeout``
    LOGIN_TIMEOUT = 4108  # reconnectable: no session opened within ``login_timeout``
    # reconnectable: requests kept exceeding the connection's or the client's budget
    # (4113/4116 refusals) for ``flood_close_after`` seconds
    QUOTA_EXCEEDED = 4113
    # reconnectable: the client did not read fast enough (its outbox overflowed, a write
    # waited ``write_timeout``, or it held the most when ``queued_bytes_budget`` was spent).
    # A reply (bounded by ``max_reply_bytes``, at most half the outbox) fits beside what a
    # busy connection has queued, so asking for a big page does not close it with this.
    SLOW_CONSUMER = 4120


class ChatError(Exception):
    """A request that failed with a client-visible code. Raised by services, turned into
    an error reply by the connection; never closes the connection."""

    def __init__(
        self,
        code: ErrorCode,
        reason: str | None = None,
        detail: str | None = None,
        app_code: int | None = None,
    ):
        self.code = code
        self.reason = reason or code.name
        self.detail = detail
        self.app_code = app_code  # an app's own code (a hook's refusal): appCode
        super().__init__(f"{int(code)} {self.reason}")


class ProtocolError(Exception):
    """The peer sent something that is not a command (undecodable frame, wrong frame
    type). ``close_code`` is a hint for when the connection cannot go on."""

    def __init__(self, message: str, close_code: CloseCode = CloseCode.PROTOCOL_ERROR):
        self.close_code = close_code
        super().__init__(message)
