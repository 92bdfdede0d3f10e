"""Every setting of the server, its default, and what happens at the limit.

Values come, lowest precedence first, from the defaults below, a TOML file
(``--config FILE``: top-level keys or a ``[chatroom]`` table, named as the fields), the
environment (``CHATROOM_<FIELD>`` in upper case, e.g. ``CHATROOM_MAX_MEMBERS=1000``) and
the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from chatroom.core.hooks import NAMES, canonical_name


@dataclass(frozen=True, slots=True)
class HookSetting:
    """One hook's table (``[hooks.messageReceived]``); see docs/hooks.md."""

    name: str
    """LeanCloud's hook name, ``_messageReceived`` (the table may leave out the ``_``)."""
    url: str
    """``http://`` or ``https://`` URL the parameters are POSTed to as JSON."""
    timeout_ms: int = 500
    """Milliseconds one call may take, connecting included; then it counts as failed."""
    on_failure: str = "pass"
    """``pass``: a failed call (timeout, error, bad reply, ``concurrency`` used up) is
    ignored and the request goes on unchanged. ``refuse``: the request is refused with
    the operation's rejected-by-app code (4402 message, 4305 conversation). Notification
    hooks always pass."""
    concurrency: int = 32
    """Calls of this hook in flight at once; one more meets ``on_failure`` at once."""


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    """Address of both listeners."""
    port: int = 8080
    """WebSocket port for clients; 0 picks a free port (printed at start)."""
    http_port: int = 8081
    """HTTP port for /healthz (later /metrics, the REST API and the demo page)."""
    db: str = "./chatroom.db"
    """SQLite file, created if missing; ``:memory:`` keeps everything in memory."""
    redis: str = ""
    """``redis://HOST:PORT/DB`` (or ``unix:///PATH?db=N``): join the cluster of nodes
    meeting in that Redis (docs/cluster.md). Empty: this node is alone."""
    redis_queue: int = 10_000
    """Records a node may hold for Redis between two drains; beyond it chatroom NORMAL
    and LOW pushes are shed first (chatroom/hub/redis_queue.py)."""
    workers: int = 1
    """Processes serving the one port (SO_REUSEPORT); more than one needs ``redis``
    and a database every process can share. The process started with it supervises
    that many ``chatroom serve`` workers (chatroom/cli/workers.py) and serves nothing."""
    reuse_port: bool = False
    """Bind both ports with SO_REUSEPORT, sharing them with other processes of this
    user that do too. ``--workers`` sets it for its workers (``CHATROOM_REUSE_PORT``);
    set by hand, it lets separately started nodes share one port."""
    app_id: str = ""
    """When set, a login with another appId fails with 4100. Empty accepts any."""
    log_level: str = "info"
    tls_cert: str = ""
    """PEM file with the server's certificate (and its chain). With ``tls_key``, both
    ports speak TLS: ``wss://`` for clients, ``https://`` for HTTP. Both files are read
    again on SIGHUP and when they change (see ``tls_check_interval``): new connections
    get the new certificate, open ones keep theirs. Empty: no TLS."""
    tls_key: str = ""
    """PEM file with the private key of ``tls_cert``; one without the other fails at start."""
    tls_check_interval: float = 60.0
    """Seconds between checks of the certificate files for changes; 0: only SIGHUP."""

    max_client_id_length: int = 64
    """Longer client ids are refused at login with 4103 INVALID_LOGIN."""
    max_members: int = 500
    """Members of a normal conversation; beyond it create/add fail with 4304."""
    max_message_bytes: int = 64 * 1024
    """Content of one message (text or binary) plus its mention list; larger ones (and
    edits) are refused with 4109."""
    max_frame_bytes: int = 1024 * 1024
    """One inbound WebSocket message; larger ones close the connection with 1009."""
    temp_conv_ttl: int = 86_400
    """Seconds a temporary conversation lives when ``conv/start`` gives no
    ``tempConvTTL``; a longer ``tempConvTTL`` is cut to 30 days. After it every
    operation on the conversation fails with 4323 and queries no longer return it."""
    conv_event_log: int = 50
    """Conversation events (joined, left, members joined/left, updated) remembered per
    client for an automatic re-login, which gets those it missed right after
    ``opened``; older ones are forgotten (the client sees the state on its next fetch).
    0 turns the replay off."""
    conv_event_clients: int = 100_000
    """Clients whose recent conversation events are remembered; the least recently
    concerned are forgotten first."""
    conv_event_ttl: int = 172_800
    """Seconds the store keeps a conversation event for the replay after a re-login
    (also across a restart); older ones are purged and no longer replayed."""
    master_key: str = ""
    """The app's master key: signs logins and conversation operations (see
    ``signatures``) and authorises the operator's admin endpoints
    (``/admin/...``). Empty: the admin endpoints answer 403."""
    signatures: str = ""
    """Comma list of what must be signed with ``master_key``: ``login`` (a login
    without a valid signature, or an automatic re-login without a valid session token,
    fails with 4102), ``conversation`` (``conv/start``, ``add`` and ``remove`` fail
    with 4302) and ``blacklist`` (``blockMembers``/``unblockMembers`` fail with 4546).
    Empty: nothing is checked. ``app_id`` is part of every signed text."""
    signature_window: int = 300
    """Seconds a signature's timestamp may be away from the server clock; older or
    newer ones fail, and a nonce is accepted once within this window."""
    signature_nonces: int = 100_000
    """Nonces remembered to refuse replays; beyond it the oldest are forgotten early."""
    history_default_limit: int = 20
    """Messages a ``logs`` query returns when it gives no limit (or 0)."""
    history_max_limit: int = 100
    """``logs`` limits above this are cut to it (LeanCloud's "at most 100 per query")."""
    max_reply_bytes: int = 512 * 1024
    """Bytes (protobuf encoding) of what one reply or login push may carry: a ``logs``
    page, ``conv/query`` results, and what a login pushes. The bound in force is this or
    half of ``outbox_max_bytes``, whichever is less (``reply_bytes``): a reply must fit
    beside what a busy connection has queued, since a reply that does not fit in the
    outbox closes its connection with 4120. Setting this above half of
    ``outbox_max_bytes`` fails at start. A ``logs`` page stops before the message that
    would pass it, keeping the end it fills first (the newest by default), and always
    holds at least one message: a client paging from the page's edge goes on. The JS
    SDK's ``createMessagesIterator`` takes a page shorter than its limit for the end:
    a page of 100 is cut when its messages average over 5 KiB, one of 10 over 50 KiB
    (apps that store bigger messages raise ``outbox_max_bytes`` and this together).
    ``conv/query`` results stop before the conversation that would pass it (its
    attributes and, with flag 2, its last message; one at least): the client pages on
    with ``skip``. What a login pushes (missed patches, the last messages in
    ``unread``, protocol-v1 offline messages) shares one such budget; what is left out
    comes later (see README)."""
    max_attr_bytes: int = 64 * 1024
    """Size of a conversation's attributes (its JSON, name included). A ``conv/start``
    or ``conv/update`` that would make them larger fails with 4306 and stores nothing."""
    max_name_bytes: int = 1024
    """Size of a conversation's ``name`` (UTF-8); longer ones fail like ``max_attr_bytes``."""
    conv_query_scope: str = "open"
    """What ``conv/query`` finds for a client that is not a member of a conversation.
    ``open`` (LeanCloud's behaviour, the default): every conversation, with its
    attributes, members, muted members, creator and times. ``members``: only
    chatrooms, system conversations and conversations whose ``public`` attribute is
    ``true``; the others are left out as if they did not exist. Under either, the last
    message (flag 2) goes only to those who may read the history (members; anyone for
    a chatroom). Any other value fails at start."""

    session_token_ttl: int = 172_800
    """Seconds a session token (``st``) resumes a session; after it, 4112."""
    login_timeout: float = 60.0
    """Seconds a connection may stay without a logged-in session; then closed 4108."""
    idle_timeout: float = 400.0
    """Seconds without any inbound frame before a connection is closed with 4107. The
    official SDK sends ``echo`` every 180 s and gives up itself after 380 s."""
    handshake_timeout: float = 10.0
    """Seconds for the WebSocket opening handshake and for the closing one."""
    write_timeout: float = 10.0
    """Seconds a socket may refuse data before its client counts as a slow consumer
    (closed with 4120, reconnectable)."""
    write_delay: float = 0.005
    """Least seconds between the end of a busy flush (one that wrote to at least
    ``write_delay_threshold`` connections) and the next flush, so that a busy room
    sends the messages of that interval in one system call per viewer. A message
    after a quiet spell is written at once. 0 flushes at the next scheduler tick."""
    write_delay_threshold: int = 100
    """Connections in one flush that make it busy. Chats with a few recipients per
    message stay below it and are never delayed; 0 delays every flush. A cluster node
    counts a chatroom's viewers on the other nodes too, and pauses as one node with
    all of them would (docs/cluster.md)."""
    write_max_pause: float = 0.02
    """Most seconds between two busy flushes, however long the last one took: what a
    message may wait for its room's next flush, on top of the flush itself (the pause
    grows with the flush's length, to share system calls, up to this; never below
    ``write_delay``)."""
    write_latency: float = 0.05
    """Seconds a message should wait at most for its room's flush to reach every
    viewer: the pause after a busy flush is shortened (to ``write_delay`` at least) so
    that two flushes and the pause fit in it. A room of thousands, whose flushes take
    tens of milliseconds, is then written again soon after each flush; its messages
    share writes because they arrive during one."""
    write_slice: int = 500
    """Connections one flush writes before letting the other tasks run (reading and
    fanning out the next messages), so that in a room of thousands no message waits
    behind a whole sweep of its sockets. 0 writes every dirty connection in one go."""
    gc_freeze_interval: float = 1.0
    """Seconds between moving long-lived objects out of the cycle collector's sight
    (``gc.freeze``), so that its automatic passes never walk every connection and
    stall the server; meanwhile its automatic full passes are off (see
    chatroom/net/gcpolicy.py). 0 leaves the collector as it is."""
    gc_full_after_closes: int = 2000
    """Closed connections after which a full collection (frozen objects included)
    frees their reference cycles; it pauses the server for ~35 us per live connection.
    0: a full collection every ``gc_freeze_interval``."""
    gc_full_interval: float = 900.0
    """Seconds after which a full collection runs even without closes; 0: never."""
    outbox_max_bytes: int = 1024 * 1024
    """Bytes queued for one connection. Beyond it chatroom LOW, then NORMAL frames are
    shed; if reliable frames (replies, normal conversations, HIGH) still do not fit the
    connection is closed with 4120. Half of it bounds one reply (``max_reply_bytes``),
    so that a reply fits beside what a busy connection has queued."""
    outbox_max_frames: int = 8192
    """Frames queued for one connection; the same policy as ``outbox_max_bytes``."""
    queued_bytes_budget: int = 256 * 1024 * 1024
    """Bytes queued in all outboxes together (default 256 MiB), counted beyond each
    connection's first 64 KiB in 64 KiB slabs (what a viewer who keeps up holds between
    two writes is not counted). Once it is spent, chatroom LOW and NORMAL frames that
    would need a new slab are shed, and the connections holding the most are closed
    with 4120 (their backlog dropped at once) until the total is back under seven
    eighths of it."""
    malloc_trim_after_closes: int = 50
    """Closed connections (those that never finished their handshake included) after
    which freed memory is handed back to the system (``malloc_trim``, where the C
    library is glibc, after a collection of the unfrozen objects that empties the
    interpreter's free lists), at most once per ``gc_freeze_interval`` (1 s if that is
    0), off the hot path. 0: never."""
    inbound_queue: int = 16
    """Inbound messages buffered per connection before its reader stops reading."""
    requests_per_second: float = 5000.0
    """Request budget of one connection (token bucket); requests beyond it are answered
    with 4113 and not executed (see ``flood_close_after``)."""
    request_burst: int = 10_000
    user_messages_per_second: float = 5000.0
    """Messages (``direct``) one client id may send per second over all its connections
    together (token bucket); beyond it they are refused with an ack of 4116 and not
    sent. The default is one connection's request budget: a client's several connections
    share what one gets. 0 turns it off."""
    user_message_burst: int = 10_000
    """Messages a client id may send at once above ``user_messages_per_second``."""
    user_budget_clients: int = 100_000
    """Client ids whose message budget is remembered. A budget unused long enough to be
    full again is forgotten at once; beyond this many the least recently used are
    forgotten early (they start again with a full budget)."""
    flood_close_after: float = 10.0
    """Seconds a connection may keep exceeding its budgets: once its requests have been
    refused (4113, 4116) for this long, with no pause this long between two refusals, it
    is closed with 4113 (the SDK reconnects). 0: never closed for it."""

    commit_queue: int = 10_000
    """Messages waiting for their group commit; a sender beyond it waits."""
    commit_batch: int = 1000
    """Most messages written in one transaction."""
    lasting_backlog: int = 100_000
    """Changes to session tokens, nonces, conversation events, pending receipts and
    wills waiting to be written to the store (write-behind, one transaction per batch).
    Beyond it new ones are not recorded (counted as ``lasting.dropped``): they still
    work until the server restarts, and are forgotten then."""
    purge_interval: float = 60.0
    """Seconds between deletions of expired session tokens, nonces, conversation
    events, receipts and wills from the store (10 000 rows per kind per transaction);
    0 never deletes them (the store then grows with every login)."""
    dedupe_cache: int = 100_000
    """Recent ``(sender, conversation, dt)`` keys remembered so that a resend is acked
    with the first id and stored once. Older keys are forgotten."""
    chatroom_buffer: int = 1000
    """Recent messages each chatroom keeps in memory to answer history queries."""
    chatroom_rejoin_window: float = 1800.0
    """Seconds after a dropped connection during which resuming the session (``r`` with
    its token) puts the viewer back into the chatroom it watched."""
    room_messages_per_second: float = 0.0
    """Intake budget of one chatroom, messages per second; 0 turns it off. Messages
    beyond it are refused with 4116, HIGH ones last (see ``room_high_share``)."""
    room_high_share: float = 0.2
    """Share of the room budget that only HIGH messages may use."""
    shed_backlog_low: int = 64
    """Chatroom LOW messages are dropped as they are read while more chatroom messages
    than this wait to be processed, in total over their senders (counting those still
    in the kernel's receive queues): the server is behind."""
    shed_backlog_normal: int = 128
    """The same for NORMAL messages, once the backlog has stayed past this for a
    moment (0.1-0.2 s) without coming down, or at once past one and a half times this:
    a backlog the server drains, left by a short pause, costs NORMAL messages nothing,
    and HIGH ones never wait behind more. HIGH messages are never dropped this way."""
    shed_lag_low: float = 0.1
    """Seconds of event-loop lag beyond which chatroom LOW messages are dropped as
    they are read."""
    shed_lag_normal: float = 0.2
    """The same for NORMAL messages."""

    allow_edit: bool = True
    """Whether senders may edit their messages (``patch/modify``); off: 4406."""
    allow_recall: bool = True
    """Whether senders may recall their messages; off: 4407."""
    patches_at_login: int = 1000
    """Most missed ``patch/modify`` items pushed after a login (newest kept out: the
    client then sees them in history)."""
    unread_conversations: int = 50
    """Most conversations in the ``unread`` push after a protocol-v3 login, the most
    recently changed first; the others are told at a later login or when they change."""
    offline_messages_per_conversation: int = 20
    """Protocol v1 (``lc.*.1``): most stored messages pushed per conversation after a
    login, the newest ones; older ones stay in history."""
    receipt_memory: int = 100_000
    """Messages sent with ``r: true`` remembered until their receiver acks them; the
    oldest are forgotten beyond it (their delivery receipt is then not sent, while
    ``lastDeliveredAt`` from ``max_read`` still covers them)."""
    receipt_ttl: int = 604_800
    """Seconds the store keeps a message that waits for its delivery receipt, so that
    an ack after a restart still sends it; after it the receipt is never sent."""
    sensitive_words_file: str = ""
    """Operator word list, one word per line (blank lines and ``#`` comments skipped),
    matched case-insensitively and replaced with ``***`` in group conversations (more
    than 2 members), chatrooms and system conversations. Empty: no filtering. The file
    is re-read when its modification time or size changes, checked at most every
    ``sensitive_words_check_interval`` seconds; an unreadable file keeps the old list."""
    sensitive_words_check_interval: float = 5.0
    """Seconds between checks of the word file for changes."""
    push_webhook: str = ""
    """URL that offline-push notifications are POSTed to as JSON ``{conversation,
    recipients, payload, from, messageId, timestamp}``. Empty: nothing is sent."""
    push_template: str = ""
    """Push payload (JSON text) for messages sent without ``pushData``; ``${convId}``,
    ``${timestamp}`` and ``${fromClientId}`` are filled in. Empty: such messages cause
    no push."""
    push_queue: int = 1000
    """Notifications waiting for the webhook; beyond it new ones are dropped and
    counted (``push_dropped``)."""
    push_timeout: float = 5.0
    """Seconds one webhook request may take; a slower one is abandoned and counted as
    failed (``push_failed``)."""
    member_changes_by: str = "anyone"
    """Who may add and remove *other* members of a normal or temporary conversation:
    ``anyone`` (every member, LeanCloud's default) or ``managers`` (the owner and the
    managers; others get 4308 CONVERSATION_OPERATION_UNAUTHORIZED). Either way nobody
    removes the owner, and only the owner removes managers (chatroom/core/roles.py)."""
    moderation_batch: int = 500
    """Client ids one mute, unmute, block or unblock request may name; a longer list is
    refused whole with 4301 and changes nothing."""
    moderation_list_limit: int = 10_000
    """Muted members, and blocked members, one conversation keeps; past it further ids
    fail one by one with 4304 in the partial-success reply."""
    hooks: tuple[HookSetting, ...] = ()
    """Server hooks called as webhooks (docs/hooks.md): from the TOML tables
    ``[hooks.<name>]`` (``url``, ``timeout_ms``, ``on_failure``, ``concurrency``), or
    ``CHATROOM_HOOKS`` as a JSON object of the same tables. None: no hook is called."""
    hook_secret: str = ""
    """Shared secret of the hooks' HMAC-SHA256 signature header; best given as
    ``CHATROOM_HOOK_SECRET``. Empty: calls go unsigned."""
    hook_ca_file: str = ""
    """PEM file of the certificate authorities trusted for ``https://`` hook URLs, in
    place of the system's (an internal CA). Empty: the system's."""
    hook_queue: int = 1000
    """Notification hooks (``_messageSent``, ``_clientOnline``...) waiting to be posted;
    beyond it new ones are dropped and counted (``dropped``), never waited for."""
    hook_workers: int = 4
    """Tasks posting queued notifications; each call still counts against its hook's
    ``concurrency``."""
    moderation_cache: int = 10_000
    """Conversations whose managers, mutes and blocks are kept in memory (each message
    sent checks them); the least recently used are read from the store again."""
    message_retention_days: int = 180
    """Days a message is kept; older ones are deleted by a background sweep (in batches
    of 500 rows, one transaction each, so that the committer never waits for long),
    which also deletes expired temporary conversations with their messages. 0 keeps
    messages forever (expired temporary conversations still go)."""
    retention_interval: float = 600.0
    """Seconds between retention sweeps (the first one runs at start); 0: none at all."""

    @property
    def reply_bytes(self) -> int:
        """The bound in force on one reply: see ``max_reply_bytes``."""
        return min(self.max_reply_bytes, self.outbox_max_bytes // 2)

    def with_overrides(self, values: Mapping[str, object]) -> Config:
        """A copy with the given fields replaced, converted to their declared types."""
        kinds = {f.name: f.type for f in fields(self)}
        changes: dict[str, object] = {}
        for name, raw in values.items():
            if name not in kinds:
                raise ValueError(f"unknown setting {name!r}")
            if name == "hooks":
                changes[name] = parse_hooks(raw)
                continue
            value = _convert(name, str(kinds[name]), raw)
            if isinstance(value, float) and math.isnan(value):
                raise ValueError(f"setting {name!r}: must be a number, got {raw!r}")
            if isinstance(value, (int, float)) and value < 0:
                raise ValueError(f"setting {name!r}: must not be negative, got {raw!r}")
            if name in _CHOICES and value not in _CHOICES[name]:
                raise ValueError(f"setting {name!r}: one of {_CHOICES[name]}, got {raw!r}")
            changes[name] = value
        config = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        if bool(config.tls_cert) != bool(config.tls_key):
            raise ValueError("settings 'tls_cert' and 'tls_key': give both or neither")
        if "max_reply_bytes" in changes and config.max_reply_bytes > config.reply_bytes:
            # Asked for, it would be quietly cut; the default follows the outbox instead.
            raise ValueError(
                f"setting 'max_reply_bytes': at most half of outbox_max_bytes "
                f"({config.reply_bytes}), so that a reply fits beside what a busy "
                f"connection has queued; got {config.max_reply_bytes}"
            )
        return config


# Settings that take one of a few words.
_CHOICES: dict[str, tuple[str, ...]] = {
    "conv_query_scope": ("open", "members"),
    "member_changes_by": ("anyone", "managers"),
}


def _convert(name: str, kind: str, raw: object) -> object:
    try:
        if kind == "int":
            if isinstance(raw, (bool, float)):  # int(2.5) would quietly be 2
                raise ValueError
            return int(cast(str, raw))
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(cast(str, raw))
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "str":
            if not isinstance(raw, str):
                raise ValueError
            return raw
    except ValueError:
        raise ValueError(f"setting {name!r}: expected {kind}, got {raw!r}") from None
    raise ValueError(f"setting {name!r}: unsupported type {kind}")  # pragma: no cover


_HOOK_KEYS = {"url", "timeout_ms", "on_failure", "concurrency"}


def parse_hooks(raw: object) -> tuple[HookSetting, ...]:
    """The ``hooks`` setting from its TOML tables (or their JSON text), checked whole."""
    if isinstance(raw, tuple) and all(isinstance(h, HookSetting) for h in raw):
        return cast(tuple[HookSetting, ...], raw)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError("setting 'hooks': not a JSON object") from None
    if not isinstance(raw, dict):
        raise ValueError("setting 'hooks': a table of hook tables")
    hooks = tuple(_hook(str(key), table) for key, table in raw.items())
    names = [h.name for h in hooks]
    if len(set(names)) < len(names):  # "messageSent" and "_messageSent"
        raise ValueError("setting 'hooks': a hook is configured twice")
    return hooks


def _hook(key: str, table: object) -> HookSetting:
    where = f"setting 'hooks.{key}'"
    name = canonical_name(key)
    if name is None:
        raise ValueError(f"{where}: unknown hook; one of {', '.join(NAMES)}")
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table")
    unknown = set(table) - _HOOK_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    url = table.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{where}: url must be an http:// or https:// URL")
    if not urlsplit(url).hostname:
        raise ValueError(f"{where}: url has no host")
    timeout_ms = _convert(f"hooks.{key}.timeout_ms", "int", table.get("timeout_ms", 500))
    concurrency = _convert(f"hooks.{key}.concurrency", "int", table.get("concurrency", 32))
    on_failure = table.get("on_failure", "pass")
    if on_failure not in ("pass", "refuse"):
        raise ValueError(f"{where}: on_failure is 'pass' or 'refuse', got {on_failure!r}")
    if not isinstance(timeout_ms, int) or not 0 < timeout_ms <= 60_000:
        raise ValueError(f"{where}: timeout_ms from 1 to 60000, got {timeout_ms!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"{where}: concurrency at least 1, got {concurrency!r}")
    return HookSetting(name, url, timeout_ms, on_failure, concurrency)


def from_environment(env: Mapping[str, str]) -> dict[str, object]:
    """The ``CHATROOM_*`` variables that name a setting."""
    out: dict[str, object] = {}
    for f in fields(Config):
        key = "CHATROOM_" + f.name.upper()
        if key in env:
            out[f.name] = env[key]
    return out


def from_file(path: Path) -> dict[str, object]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    table = data.get("chatroom", data)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [chatroom] must be a table")
    out = dict(table)
    if "hooks" in data and "hooks" not in out:
        out["hooks"] = data["hooks"]  # [hooks.x] tables beside a [chatroom] table
    return out


def load(
    config_file: Path | None = None,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Defaults < file < environment < command line."""
    values = from_file(config_file) if config_file is not None else {}
    values.update(from_environment(os.environ if env is None else env))
    if cli:
        values.update({k: v for k, v in cli.items() if v is not None})
    # One call, so that settings checked together (max_reply_bytes against
    # outbox_max_bytes) are checked once all sources are in.
    return Config().with_overrides(values)


def check_combination(config: Config) -> None:
    """Refuse, with what it would need, a setup that cannot work: several processes
    (``workers``) each counting only its own clients, or each with its own database."""
    if config.redis and not config.redis.startswith(("redis://", "unix://")):
        raise ValueError(
            f"setting 'redis': a redis://HOST:PORT/DB (or unix:///PATH) URL, got {config.redis!r}"
        )
    if config.workers < 1:
        raise ValueError(f"--workers {config.workers}: at least 1 process")
    if config.workers == 1:
        return
    if not config.redis:
        raise ValueError(
            f"--workers {config.workers} needs --redis: without it each process would see "
            "only its own clients (wrong online counts, messages not delivered across them)"
        )
    if config.db == ":memory:" or not config.db.startswith("postgresql://"):
        raise ValueError(
            f"--workers {config.workers} needs a database every process shares "
            f"(--db postgresql://...), not {config.db!r}: several processes on one SQLite "
            "file or in memory would each keep their own state"
        )
    if config.port == 0:
        raise ValueError(f"--workers {config.workers} needs a fixed --port to share")
