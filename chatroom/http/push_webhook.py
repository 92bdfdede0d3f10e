"""Offline push notifications through an operator webhook (features.md F47).

The server has no APNs or vendor push of its own. When a stored message reaches a
normal conversation in which some members have no session and have not muted it, one
notification goes to ``push_webhook`` as an HTTP POST of JSON::

    {"conversation": cid, "recipients": [...], "payload": {...},
     "from": sender, "messageId": mid, "timestamp": ms}

``payload`` is the message's ``pushData`` (JSON; a plain string becomes
``{"alert": string}``, as Java sends one), else ``push_template`` with ``${convId}``,
``${timestamp}`` and ``${fromClientId}`` filled in; without either nothing is sent.

Best effort, off the hot path: ``offer`` never blocks (a full queue drops the
notification and counts it), and one background task in the server nursery posts them
one at a time, each under ``push_timeout``. The HTTP call runs in a worker thread
(urllib) so that a slow webhook can never stall the Trio loop.
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass

import orjson
import trio

from chatroom.core.model import JSON

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PushStatistics:
    sent: int = 0
    failed: int = 0
    dropped: int = 0


class PushNotifier:
    """A bounded queue of notifications and the task that posts them."""

    def __init__(self, url: str, queue_size: int, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.stats = PushStatistics()
        self._send, self._receive = trio.open_memory_channel[bytes](max(queue_size, 0))

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def offer(self, notification: dict[str, JSON]) -> bool:
        """Queue one notification; False (and counted as dropped) when the queue is full."""
        if not self.url:
            return False
        try:
            self._send.send_nowait(orjson.dumps(notification))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.stats.dropped += 1
            return False
        return True

    async def run(self) -> None:
        """Post queued notifications until cancelled (the server nursery does)."""
        async for body in self._receive:
            with trio.move_on_after(self.timeout) as scope:
                try:
                    await trio.to_thread.run_sync(self._post, body, abandon_on_cancel=True)
                except Exception as exc:  # any failure of a best-effort side channel
                    self.stats.failed += 1
                    log.warning("push webhook %s failed: %s", self.url, exc)
                    continue
            if scope.cancelled_caught:
                self.stats.failed += 1
                log.warning("push webhook %s timed out", self.url)
            else:
                self.stats.sent += 1

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()
