"""Signatures for logins and conversation operations (features.md F08, Appendix A.2).

Pure: no I/O, no trio. The signed texts, HMAC-SHA1 in hex with the master key:

- login: ``appId:clientId::timestamp:nonce`` (two colons: an empty field);
- conversation start: ``appId:clientId:sortedMemberIds:timestamp:nonce``, the members
  (the creator included, as the SDK sends them) sorted and joined with ``:``;
- add / remove: ``appId:clientId:convId:sortedMemberIds:timestamp:nonce:action`` with
  action ``invite`` / ``kick`` (LeanCloud 5.x) or ``add`` / ``remove`` (what the 4.3.1
  factory is called with; both are accepted);
- block / unblock members: the same text as add / remove with action
  ``conversation-block-clients`` / ``conversation-unblock-clients`` (what the SDK's
  ``blacklistSignatureFactory`` is called with: the client, the conversation, the
  sorted ids and the action).

The timestamp is in seconds (seed 003); a value over ``10**11`` is taken as milliseconds,
since some versions of LeanCloud's documentation say so. It must lie within ``window``
seconds of the server clock, and a nonce is accepted once per window.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

LOGIN = "login"
CONVERSATION = "conversation"
BLACKLIST = "blacklist"
KINDS = (LOGIN, CONVERSATION, BLACKLIST)
ACTIONS = {"invite": ("invite", "add"), "kick": ("kick", "remove")}
BLOCK_ACTIONS = {True: "conversation-block-clients", False: "conversation-unblock-clients"}


def sign(master_key: str, text: str) -> str:
    """HMAC-SHA1 of ``text`` with the master key, lower-case hex."""
    return hmac.new(master_key.encode(), text.encode(), hashlib.sha1).hexdigest()


def login_text(app_id: str, client_id: str, timestamp: int, nonce: str) -> str:
    return f"{app_id}:{client_id}::{timestamp}:{nonce}"


def start_text(
    app_id: str, client_id: str, members: Iterable[str], timestamp: int, nonce: str
) -> str:
    return f"{app_id}:{client_id}:{':'.join(sorted(members))}:{timestamp}:{nonce}"


def members_text(
    app_id: str,
    client_id: str,
    cid: str,
    members: Iterable[str],
    timestamp: int,
    nonce: str,
    action: str,
) -> str:
    joined = ":".join(sorted(members))
    return f"{app_id}:{client_id}:{cid}:{joined}:{timestamp}:{nonce}:{action}"


def seconds(timestamp: int) -> int:
    """A signature timestamp in seconds, whichever unit the client used."""
    return timestamp // 1000 if timestamp > 10**11 else timestamp


class Verifier:
    """Checks signatures: HMAC, timestamp window and nonce reuse.

    ``nonces`` bounds the memory for seen nonces: the oldest are forgotten first, and a
    nonce older than the window is refused by its timestamp anyway. ``on_use`` is told
    of every nonce accepted and until when (epoch seconds) it stays used, so that the
    store keeps them; ``seed`` brings them back after a restart.
    """

    def __init__(
        self,
        master_key: str,
        window: int = 300,
        nonces: int = 100_000,
        on_use: Callable[[str, int], None] | None = None,
    ) -> None:
        self._key = master_key
        self._window = window
        self._max = nonces
        self._on_use = on_use
        self._seen: OrderedDict[str, int] = OrderedDict()  # nonce -> when it expires (s)

    def seed(self, used: dict[str, int]) -> None:
        """Nonces used before a restart, nonce -> expiry in epoch seconds."""
        for nonce, until in sorted(used.items(), key=lambda item: item[1]):
            self._seen[nonce] = until
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def check(
        self, texts: Sequence[str], signature: str, timestamp: int, nonce: str, now_ms: int
    ) -> str | None:
        """None when ``signature`` signs one of ``texts`` (built with ``timestamp`` as
        sent) and is fresh; otherwise the reason it is refused."""
        if not signature or not nonce:
            return "signature, timestamp and nonce are required"
        now = now_ms // 1000
        if abs(now - seconds(timestamp)) > self._window:
            return f"timestamp is more than {self._window} s away from the server clock"
        if not any(hmac.compare_digest(sign(self._key, t), signature.lower()) for t in texts):
            return "signature does not match"
        self._forget(now)
        if nonce in self._seen:
            return "nonce already used"
        self._seen[nonce] = now + self._window
        if self._on_use is not None:
            self._on_use(nonce, now + self._window)
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return None

    def _forget(self, now: int) -> None:
        while self._seen:
            nonce, until = next(iter(self._seen.items()))
            if until > now:
                return
            del self._seen[nonce]
