"""``RedisHub``: the Hub of one node of a cluster whose nodes meet in Redis. Sans-I/O.

The hub answers every question synchronously from ``ClusterView`` (redis_view.py) and
turns each push that reaches another node into records (redis_wire.py) queued in
``Outgoing`` (redis_queue.py); ``chatroom.net.redis_link`` publishes them and hands back
what arrives (``receive``), keeping the view fresh. This module holds the pushes, to
other nodes and from them; redis_sessions.py the rest: the sessions, the questions,
kicks, wills and cache changes.

Channels (docs/cluster.md says why):

- ``<prefix>room:<cid>``: a chatroom's pushes, one PUBLISH for all its viewers on every
  node; a node subscribes while it has a viewer of that chatroom;
- ``<prefix>node:<id>``: pushes to clients, kicks (from the server and from a
  chatroom) and wills for one node's sessions; one PUBLISH per node holding
  recipients, never one per recipient;
- ``<prefix>presence``: presence events and heartbeats (every node).

Order: while Redis is reachable, a chatroom push reaches even this node's viewers
through the room channel once this node is subscribed to it, and a push to clients of
several nodes reaches this node's recipients through its own channel, all its parts in
one MULTI/EXEC. Redis then gives every node the same order. A push whose recipients
are all here (or any push while Redis is unreachable) is delivered at once. A node's
viewers of a chatroom read its pushes from one frame log (``delivery.RoomLogs``),
appended in the order this node delivers them, as ``LocalHub``'s viewers do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable

from google.protobuf.message import DecodeError

from chatroom.core.model import Conversation, ConvType, Message
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.hub import redis_wire as wire
from chatroom.hub.base import CONFLICT_DETAIL, HubStatistics
from chatroom.hub.delivery import deliver
from chatroom.hub.redis_queue import FORGET, KEEP, PUBLISH, UNKEEP, Entry
from chatroom.hub.redis_sessions import NodeSessions, node_of
from chatroom.protocol.codec import Prepared
from chatroom.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

_RELIABLE = Priority.RELIABLE
_TRANSIENT = ConvType.TRANSIENT
HEADS = 1000  # header parts of chatroom pushes kept (forgotten all at once beyond)
# A chatroom another node published to within this many seconds (by the clock of what
# this node hears) has its records sent at once: see ``to_room``
SHARED_FOR = 2.0
# A chatroom's channel, and how its pushes' records are made (``wire.stamp``)
_Head = tuple[str, Callable[[tuple[bytes, ...], int], bytes]]
_Own = tuple[Prepared, str | None, list[str] | None, Priority, str | None, str | None]


class RedisHub(NodeSessions):
    """Implements ``chatroom.hub.base.Hub`` for one node of a Redis cluster: the
    pushes, to other nodes and from them (its sessions: ``NodeSessions``)."""

    alone = False  # Hub.alone: the other nodes hear ``changed``

    def __init__(self, node: str, prefix: str = "chatroom:", queue: int = 10_000) -> None:
        super().__init__(node, prefix, queue)
        self._deliveries = 0
        self._echo_id = 0
        # Pushes sent here that come back, by echo number: the push, its chatroom (or
        # None) or its recipients here, priority, skipped token and client.
        self._own: dict[int, _Own] = {}
        self._origin = wire.origin(node)
        self._heads: dict[tuple[str, int, str | None, str | None, int], _Head] = {}
        self._kept: tuple[str, Entry] | None = None  # a chatroom's KEEP, until its push
        # A PUBLISH heard since the reader last asked was paced by its sender (wire.PACED)
        self.paced = False
        self._heard_at = 0.0  # when this node last heard something from Redis
        self._others_sent: dict[str, float] = {}  # chatroom -> when another node's push came

    # -- delivery -------------------------------------------------------------------

    def to_session(
        self, prepared: Prepared, session: Session, priority: Priority = _RELIABLE
    ) -> int:
        return self._push(prepared, (session,), priority, None)

    def to_client(
        self,
        prepared: Prepared,
        peer_id: str,
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
    ) -> int:
        return len(self._to_peers(prepared, (peer_id,), priority, skip))

    def to_clients(
        self,
        prepared: Prepared,
        peer_ids: Iterable[str],
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
    ) -> list[str]:
        return self._to_peers(prepared, peer_ids, priority, skip)

    def to_members(
        self,
        prepared: Prepared,
        conv: Conversation,
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
    ) -> int:
        if conv.kind is _TRANSIENT:
            return self.to_room(prepared, conv.cid, priority, skip)
        return len(self._to_peers(prepared, conv.members, priority, skip))

    def to_room(
        self,
        prepared: Prepared,
        cid: str,
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
        skip_client: str | None = None,
    ) -> int:
        viewers: Collection[Session] = self.view.presence.room_sessions(cid)
        if skip_client is not None:
            viewers = [s for s in viewers if s.peer_id != skip_client]
        count = len(viewers) - (skip is not None and self._mirror.get(skip) in viewers)
        here = cid not in self.subscribed
        if here:  # not heard back from the room's channel (yet): delivered now
            self._to_viewers(prepared, cid, priority, skip, skip_client)
        if self.connected:
            # Published even when this node knows of no viewer elsewhere: one that
            # joined on another node a moment ago may not have reached our presence
            # view yet, while its node already hears the room (a join is answered then).
            skipped = skip.token if skip is not None else None
            bodies = wire.push_bodies(prepared)
            key = (cid, priority, skipped, skip_client, len(bodies))
            channel, stamp = self._heads.get(key) or self._room_head(key)
            echo = 0 if here else self._echo((prepared, cid, None, priority, skipped, skip_client))
            kept = self._kept_with(cid)
            patient = not here and self._alone_sending(cid)
            self.outgoing.offer(
                channel, stamp(bodies, echo), priority, PUBLISH, kept, patient=patient
            )
            self.wake()
        elif not here:
            self._to_viewers(prepared, cid, priority, skip, skip_client)
        return count

    def _to_peers(
        self,
        prepared: Prepared,
        peer_ids: Iterable[str],
        priority: Priority,
        skip: Session | None,
    ) -> list[str]:
        self._kept = None  # a KEEP goes with a chatroom push only
        skipped = skip.token if skip is not None else None
        by_node: dict[str, list[str]] = {}
        tokens = []
        for stand_in in self.view.presence.sessions_of_all(peer_ids):
            if stand_in.token != skipped:
                tokens.append(stand_in.token)
                peers = by_node.setdefault(node_of(stand_in), [])
                if not peers or peers[-1] != stand_in.peer_id:
                    peers.append(stand_in.peer_id)
        if not self.connected or set(by_node) <= {self.node}:
            local = self._local.sessions_of_all(by_node.get(self.node, ()))
            self._push(prepared, local, priority, skip)
        else:
            for node, peers in by_node.items():
                echo = 0
                if node == self.node:  # it comes back here
                    echo = self._echo((prepared, None, peers, priority, skipped, None))
                header = {"k": "p", "to": peers}
                record = wire.push_record(header, prepared, priority, skipped, self._origin, echo)
                self.outgoing.offer(self.channel("node", node), record, priority)
            self.wake()
        return tokens

    def _alone_sending(self, cid: str) -> bool:
        """Whether no other node pushed to chatroom ``cid`` lately. Only then may its
        records wait for this node's next flush (``Outgoing.patient``): each node would
        otherwise hold its own senders' messages for a pause, and the other nodes' viewers
        would wait for that pause and then for their own node's."""
        sent = self._others_sent.get(cid)
        return sent is None or self._heard_at - sent > SHARED_FOR

    def _room_head(self, key: tuple[str, int, str | None, str | None, int]) -> _Head:
        """The channel of this node's pushes to a chatroom and how their records are
        made (kept: a room's pushes share them while their sender and priority do)."""
        cid, priority, skipped, skip_client, count = key
        header: wire.Header = {"k": "r", "c": cid, "p": int(priority), "s": skipped}
        if skip_client is not None:
            header["x"] = skip_client  # every node leaves that client's sessions out
        if len(self._heads) >= HEADS:
            self._heads.clear()
        stamp = wire.stamp(wire.head(header, count), count, self._origin)
        made = self._heads[key] = (self.channel("room", cid), stamp)
        return made

    def _kept_with(self, cid: str) -> Entry | None:
        """The KEEP of the message this push to chatroom ``cid`` carries, when it was
        queued just before (``keep``): the two are then kept or shed together."""
        kept, self._kept = self._kept, None
        if kept is None or kept[0] != cid or self.outgoing.last is not kept[1]:
            return None
        return kept[1]

    def _echo(self, own: _Own) -> int:
        """The echo number of a push that comes back here: its delivery then reuses
        this Prepared (and its encodings)."""
        self._echo_id = echo = self._echo_id % 0xFFFF_FFFF + 1
        self._own[echo] = own
        if len(self._own) > self.outgoing.capacity:  # lost on the way: forget it
            del self._own[next(iter(self._own))]
        return echo

    def _heard_own(self, echo: int) -> None:
        """A push of this node came back (echo 0: it was delivered when sent)."""
        own = self._own.pop(echo, None)
        if own is None:
            return
        prepared, cid, peers, priority, skipped, skip_client = own
        skip = self._skipped(skipped)
        if cid is not None:
            self._to_viewers(prepared, cid, priority, skip, skip_client)
        else:
            self._push(prepared, self._local.sessions_of_all(peers or ()), priority, skip)

    def _push(
        self,
        prepared: Prepared,
        sessions: Iterable[Session],
        priority: Priority,
        skip: Session | None,
    ) -> int:
        count = deliver(prepared, sessions, priority, skip)
        self._deliveries += count
        return count

    def _to_viewers(
        self,
        prepared: Prepared,
        cid: str,
        priority: Priority,
        skip: Session | None,
        skip_client: str | None,
    ) -> None:
        """A chatroom push to its viewers here, through the room's frame log."""
        self._deliveries += self._logs.deliver(prepared, cid, priority, skip, skip_client)

    def _skipped(self, token: str | None) -> Session | None:
        """The session of this node that a record's skip token names, if any (the
        sender's own session is on the sending node: none on the others)."""
        return self._by_token.get(token) if token else None

    # -- a chatroom's recent messages (its Redis list) --------------------------------
    # Queued with the pushes: a message is in the list in the transaction that
    # publishes it, so a node that heard it finds it there.

    def keep(self, message: Message, priority: Priority) -> None:
        """Before the message's push (``to_room``), which it is then shed with."""
        if self.connected:
            key = self.channel("kept", message.cid)
            patient = message.cid in self.subscribed and self._alone_sending(message.cid)
            entry = self.outgoing.offer(key, wire.kept(message), priority, KEEP, patient=patient)
            self._kept = (message.cid, entry) if entry is not None else None
            self.wake()

    def unkeep(self, message: Message) -> None:
        self._keeping(message.cid, wire.kept(message), _RELIABLE, UNKEEP)

    def forget_kept(self, cid: str) -> None:
        self._keeping(cid, b"", _RELIABLE, FORGET)

    def _keeping(self, cid: str, record: bytes, priority: Priority, op: str) -> None:
        if self.connected:
            self.outgoing.offer(self.channel("kept", cid), record, priority, op)
            self.wake()

    # -- what arrives from Redis ------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """One PUBLISH heard on a channel of this node; ``now`` in seconds."""
        self._heard_at = now
        try:
            for record in wire.heard(data, self._origin, self._own):
                if isinstance(record, int):
                    self._heard_own(record)
                else:
                    self._receive(record, now)
        except (wire.WireError, DecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            self.bad_records += 1
            log.warning("cluster: a malformed record was ignored (%s)", exc)

    def _receive(self, record: wire.Record, now: float) -> None:
        h = record.header
        kind = h["k"]
        if kind == "r":
            if len(self._others_sent) >= HEADS:
                self._others_sent.clear()
            self._others_sent[str(h["c"])] = now
            skip_client = h.get("x")
            self._to_viewers(
                record.prepared(),
                str(h["c"]),
                record.priority,
                self._skipped(h["s"]),
                None if skip_client is None else str(skip_client),
            )
        elif kind == "f":
            self.paced = True
        elif kind == "p":
            peers = self._local.sessions_of_all(map(str, h["to"]))
            self._push(record.prepared(), peers, record.priority, self._skipped(h["s"]))
        elif kind == "k":
            tokens = [str(t) for t in h["t"]]
            self._end(str(h["peer"]), tokens, int(h["c"]), str(h["r"]), str(h["d"]))
            self.on_kicked(tokens)
        elif kind == "v":
            self.on_left_room(self._leave_here(str(h["c"]), str(h["peer"])))
        elif kind == "w":
            self._void_wills(str(h["peer"]), str(h["keep"]))
        elif kind == "i":
            if h["n"] != self.node:
                state = h["v"]
                self.on_changed(str(h["w"]), str(h["key"]), list(state) if state else None)
        elif h["n"] == self.node:
            if kind == "d":
                self._logins_ordered(h["e"])
        elif self.view.gone(str(h["n"])):
            return
        elif kind == "b":
            self.view.left(str(h["n"]))
        elif kind in ("d", "h"):
            node, seq = str(h["n"]), int(h["q"])
            fresh = (
                self.view.apply(node, seq, list(h["e"]), now)
                if kind == "d"
                else self.view.heard(node, seq, now)
            )
            if not fresh:
                self.resync_wanted.add(node)
                self.missed_changes()
                self.wake()
            elif kind == "d":
                self._later_logins(h["e"])

    # Two logins with one tag on two nodes within a hop: neither node saw the other's
    # session when it logged in. Redis orders their presence events; the session whose
    # login came first in that order ends, on its own node, once the other is heard.

    def _logins_ordered(self, events: list[list[object]]) -> None:
        for event in events:
            if event[0] == "+" and any(
                s.token == event[1] for s in self._local.sessions_of(str(event[2]))
            ):
                self._heard_back.add(str(event[1]))

    def _later_logins(self, events: list[list[object]]) -> None:
        for event in events:
            if event[0] != "+" or not isinstance(event[3], str) or not self.exclusive(event[3]):
                continue
            peer, tag = str(event[2]), event[3]
            older = [
                s.token
                for s in self._local.sessions_of(peer)
                if s.tag == tag and s.token in self._heard_back
            ]
            if older:
                code = int(ErrorCode.SESSION_CONFLICT)
                self._end(peer, older, code, "SESSION_CONFLICT", CONFLICT_DETAIL)
                self.on_kicked(older)

    def statistics(self) -> HubStatistics:
        p = self._local.statistics()
        return HubStatistics(p.sessions, p.clients, p.rooms, self._deliveries)
