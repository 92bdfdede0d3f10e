"""The rules a command is checked against beyond its own fields, with the state they
keep: the sensitive-word filter, the signature verifier (and its used nonces), the
message budgets per chatroom and per client, the server-wide queue budget, and the
overload signals that shed chatroom messages at intake.
"""

from __future__ import annotations

import trio

from chatroom.config import Config
from chatroom.core.outbox import QueuedBytes
from chatroom.core.ratelimit import IntakeBacklog, RoomBudget, UserBudgets
from chatroom.core.signature import Verifier
from chatroom.core.wordfilter import WordFilter
from chatroom.service.ports import Journal


class Policies:
    """Built once from ``Config``; written only through its methods."""

    __slots__ = (
        "_config",
        "_loop_lag",
        "_room_budgets",
        "intake",
        "queued",
        "user_budgets",
        "verifier",
        "words",
    )

    def __init__(self, config: Config, journal: Journal) -> None:
        self._config = config
        self.words = WordFilter(config.sensitive_words_file, config.sensitive_words_check_interval)
        self.verifier = Verifier(
            config.master_key,
            config.signature_window,
            config.signature_nonces,
            # Stored too: a nonce used before a restart is refused after it.
            on_use=lambda nonce, until: journal.nonce(nonce, until * 1000),
        )
        self.user_budgets = UserBudgets(
            config.user_messages_per_second, config.user_message_burst, config.user_budget_clients
        )
        self.intake = IntakeBacklog()  # chatroom backlog across senders (shed_at_intake)
        self.queued = QueuedBytes(config.queued_bytes_budget)  # bytes in every outbox
        self._room_budgets: dict[str, RoomBudget] = {}
        self._loop_lag = 0.0

    def room_admits(self, cid: str, high: bool) -> bool:
        """Whether chatroom ``cid`` takes one more message now (``room_messages_per_second``,
        of which ``room_high_share`` is kept for HIGH priority); always without a limit."""
        rate = self._config.room_messages_per_second
        if rate <= 0:
            return True
        now = trio.current_time()  # only when limited: this runs for every message
        budget = self._room_budgets.get(cid)
        if budget is None:
            budget = self._room_budgets[cid] = RoomBudget(rate, self._config.room_high_share, now)
        return budget.admit(high, now)

    @property
    def loop_lag(self) -> float:
        """Seconds the event loop ran late, sustained (0 after a single pause)."""
        return self._loop_lag

    def note_loop_lag(self, seconds: float) -> None:
        """The server's sampler reports the lag it measured."""
        self._loop_lag = seconds
