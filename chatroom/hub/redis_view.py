"""The cluster as one node sees it: every session of every node, kept by presence
events over Redis. Pure.

``ClusterView.presence`` holds this node's sessions and a stand-in ``Session`` for
each session of another node (its ``outlet`` a ``RemoteOutlet`` naming the node), so
that "online?", "who watches this chatroom?" and the distinct viewer count of a
chatroom are the same O(1) questions ``core.presence`` answers for one process.

A node numbers its presence events; it publishes them in order and announces the
number it has reached in a heartbeat each second, and writes its whole presence
(a snapshot) to a key. Another node that sees a gap in the numbers, or a heartbeat
ahead of what it applied, or a node it does not know, reloads that node's snapshot.
A node not heard from within ``silence`` seconds is dropped: its viewers stop
counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatroom.core.outbox import Priority
from chatroom.core.presence import Presence, Session
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared

Event = list[Any]  # ["+", token, peer, tag] | ["-", token] | ["j", token, cid] | ["l", token]
SnapshotRow = list[Any]  # [token, peer, tag, room]
_GONE_KEPT = 1000  # node ids remembered as gone (ids are new at every start)


@dataclass(frozen=True, slots=True)
class RemoteOutlet:
    """The outlet of a session held by node ``node``: nothing is pushed through it."""

    node: str

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        """Pushes to remote sessions travel over Redis, never through here."""

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        """As ``push``."""

    def kick(self, code: int, reason: str) -> None:
        """As ``push``."""

    def detach(self, session: Session) -> None:
        """As ``push``."""


@dataclass(slots=True)
class _Node:
    seq: int = 0
    heard: float = 0.0
    stale: bool = False  # events were missed: waiting for a snapshot
    sessions: dict[str, Session] = field(default_factory=dict)


class ClusterView:
    def __init__(self, node: str) -> None:
        self.node = node
        self.presence = Presence()  # this node's sessions and the other nodes'
        self._nodes: dict[str, _Node] = {}
        self.seq = 0  # this node's last event number
        self.events: list[Event] = []  # this node's events not yet published
        self.resyncs = 0  # snapshots loaded
        self.farewells = 0  # nodes that said they leave
        self._gone: dict[str, None] = {}  # nodes that left, newest last (bounded)

    # -- this node's changes ---------------------------------------------------------

    def note(self, event: Event, publish: bool = True) -> None:
        """Number a change here; ``publish`` False when Redis is away (the snapshot
        written on reconnecting will carry it)."""
        self.seq += 1
        if publish:
            self.events.append(event)

    def take_events(self) -> tuple[int, list[Event]]:
        """The events to publish and the number of the last one."""
        events, self.events = self.events, []
        return self.seq, events

    # -- other nodes -----------------------------------------------------------------

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def apply(self, node: str, seq: int, events: list[Event], now: float) -> bool:
        """Apply ``node``'s events numbered up to ``seq``; False when some were missed
        (its snapshot must be loaded)."""
        state = self._known(node, now)
        first = seq - len(events) + 1
        if state.stale or first > state.seq + 1:
            state.stale = True
            return False
        for number, event in enumerate(events, first):
            if number > state.seq:
                self._apply_one(node, state, event)
        state.seq = max(state.seq, seq)
        return True

    def heard(self, node: str, seq: int, now: float) -> bool:
        """A heartbeat; False when the view of ``node`` is behind or unknown."""
        state = self._known(node, now)
        if state.seq != seq:
            state.stale = True
        return not state.stale

    def load(self, node: str, seq: int, rows: list[SnapshotRow], now: float) -> None:
        """Replace what is known of ``node`` by its snapshot at number ``seq``."""
        state = self._known(node, now)
        for session in state.sessions.values():
            self.presence.remove(session)
        state.sessions.clear()
        outlet = RemoteOutlet(node)
        for token, peer, tag, room in rows:
            session = Session(str(peer), outlet, tag=tag, token=str(token))
            state.sessions[session.token] = session
            self.presence.add(session)
            if room:
                self.presence.join_room(str(room), session)
        state.seq, state.stale = seq, False
        self.resyncs += 1

    def left(self, node: str) -> None:
        """``node`` shut down: forget it, and ignore what of it may still arrive."""
        self.drop(node)
        self.farewells += 1
        self._gone[node] = None
        if len(self._gone) > _GONE_KEPT:
            del self._gone[next(iter(self._gone))]

    def gone(self, node: str) -> bool:
        return node in self._gone

    def drop(self, node: str) -> None:
        state = self._nodes.pop(node, None)
        if state is not None:
            for session in state.sessions.values():
                self.presence.remove(session)

    def silent(self, now: float, silence: float) -> list[str]:
        """The nodes not heard from since ``now - silence``."""
        return [n for n, s in self._nodes.items() if s.heard < now - silence]

    def _known(self, node: str, now: float) -> _Node:
        state = self._nodes.get(node)
        if state is None:
            state = self._nodes[node] = _Node()
        state.heard = now
        return state

    def _apply_one(self, node: str, state: _Node, event: Event) -> None:
        kind, token = event[0], str(event[1])
        if kind == "+":
            session = Session(str(event[2]), RemoteOutlet(node), tag=event[3], token=token)
            state.sessions[token] = session
            self.presence.add(session)
            return
        found = state.sessions.get(token)
        if found is None:
            return
        if kind == "-":
            del state.sessions[token]
            self.presence.remove(found)
        elif kind == "j":
            self.presence.join_room(str(event[2]), found)
        elif kind == "l":
            self.presence.leave_room(found)
