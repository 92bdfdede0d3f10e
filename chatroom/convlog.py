"""A bounded in-memory log of recent conversation events per client (pure).

Used to push the events a client missed while offline after it logs in again
(``chatroom/service/conv_events.py``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from chatroom.protocol.codec import Prepared


@dataclass(frozen=True, slots=True)
class _Entry:
    server_ts: int
    prepared: Prepared
    delivered: frozenset[str]  # tokens of the sessions it was pushed to live


class ConvEventLog:
    """The last ``per_client`` conversation events of each of the ``clients`` most
    recently concerned clients; older ones are forgotten."""

    def __init__(self, per_client: int = 50, clients: int = 100_000) -> None:
        self._per_client = per_client
        self._clients = clients
        self._log: OrderedDict[str, deque[_Entry]] = OrderedDict()

    def record(
        self, peers: Iterable[str], server_ts: int, prepared: Prepared, live: Iterable[str]
    ) -> None:
        """Log one event for each of ``peers``; the sessions with the ``live`` tokens
        got it already."""
        if self._per_client <= 0:
            return
        entry = _Entry(server_ts, prepared, frozenset(live))
        for peer in peers:
            events = self._log.get(peer)
            if events is None:
                events = self._log[peer] = deque(maxlen=self._per_client)
            self._log.move_to_end(peer)
            events.append(entry)
        while len(self._log) > self._clients:
            self._log.popitem(last=False)

    def missed(self, peer: str, since: int, token: str | None) -> list[Prepared]:
        """Events for ``peer`` newer than ``since`` not delivered to session ``token``."""
        return [
            e.prepared
            for e in self._log.get(peer, ())
            if e.server_ts > since and (token is None or token not in e.delivered)
        ]
