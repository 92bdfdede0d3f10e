"""A bounded in-memory log of recent conversation events per client (pure).

Used to push the events a client missed while offline after it logs in again
(``chatroom/service/conv_events.py``). ``on_record`` hears of every event so that the
store keeps a copy; for what memory does not hold (events from before the log was made,
or of clients forgotten since), ``complete_since`` says from when memory is complete and
``missed`` merges the older events the caller read from the store.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chatroom.protocol.codec import Codec, Prepared


def _bytes(prepared: Prepared) -> bytes:
    return prepared.payload(Codec.PROTOBUF, None)  # as the store keeps it (cached)


@dataclass(frozen=True, slots=True)
class _Entry:
    server_ts: int
    prepared: Prepared
    delivered: frozenset[str]  # tokens of the sessions it was pushed to live


class ConvEventLog:
    """The last ``per_client`` conversation events of each of the ``clients`` most
    recently concerned clients; older ones are forgotten."""

    def __init__(
        self,
        per_client: int = 50,
        clients: int = 100_000,
        on_record: Callable[[list[str], int, Prepared, frozenset[str]], None] | None = None,
        complete_from: int = 0,
    ) -> None:
        self._per_client = per_client
        self._clients = clients
        self._on_record = on_record
        self._log: OrderedDict[str, deque[_Entry]] = OrderedDict()
        # Per client in _log: the time from which its deque holds every event (the
        # first one recorded since it was (re)created).
        self._since: dict[str, int] = {}
        # The same for the clients not in _log, of whom memory holds no event: when the
        # log was made (``complete_from``, on the clock of the events' server_ts), raised
        # past the events of each client forgotten since.
        self._complete_from = complete_from

    @property
    def per_client(self) -> int:
        return self._per_client

    def record(
        self, peers: Iterable[str], server_ts: int, prepared: Prepared, live: Iterable[str]
    ) -> None:
        """Log one event for each of ``peers``; the sessions with the ``live`` tokens
        got it already."""
        if self._per_client <= 0:
            return
        entry = _Entry(server_ts, prepared, frozenset(live))
        peers = list(peers)
        for peer in peers:
            events = self._log.get(peer)
            if events is None:
                events = self._log[peer] = deque(maxlen=self._per_client)
                self._since[peer] = server_ts
            self._log.move_to_end(peer)
            events.append(entry)
        while len(self._log) > self._clients:
            forgotten, lost = self._log.popitem(last=False)
            del self._since[forgotten]
            self._complete_from = max(self._complete_from, lost[-1].server_ts + 1)
        if self._on_record is not None:
            self._on_record(peers, server_ts, prepared, entry.delivered)

    def complete_since(self, peer: str) -> int:
        """Memory holds every event of ``peer`` from this time on; older ones are to be
        read from the store."""
        return self._since.get(peer, self._complete_from)

    def missed(
        self,
        peer: str,
        since: int,
        token: str | None,
        older: Iterable[tuple[int, Prepared, Iterable[str]]] = (),
    ) -> list[Prepared]:
        """Events for ``peer`` newer than ``since`` not delivered to session ``token``:
        ``older`` ones (``(server_ts, event, delivered)`` read from the store, before
        ``complete_since``) first, then those in memory; the newest ``per_client``."""
        older = list(older)
        found = [(ts, p) for ts, p, delivered in older if token is None or token not in delivered]
        # In a cluster the store is read up to now: the events it shares with memory
        # (this node's own, stored already) are given once.
        stored = {(ts, _bytes(p)) for ts, p, _ in older}
        found += [
            (e.server_ts, e.prepared)
            for e in self._log.get(peer, ())
            if e.server_ts > since
            and (token is None or token not in e.delivered)
            and (not stored or (e.server_ts, _bytes(e.prepared)) not in stored)
        ]
        return [p for _, p in found[-self._per_client :]] if self._per_client > 0 else []
