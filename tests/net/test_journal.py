"""The write-behind journal of lasting state (chatroom/net/journal.py) and the hooks of the
pure memories that feed it and are rebuilt from the store: ``ReceiptBook``,
``ConvEventLog`` and ``Verifier``.
"""

from __future__ import annotations

import dataclasses

import trio
import trio.testing
from helpers import fail_after, running_server

from chatroom.core.convlog import ConvEventLog
from chatroom.core.ids import wall_ms
from chatroom.core.model import (
    ConvEventRecord,
    LastingChanges,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)
from chatroom.core.receipt_book import ReceiptBook, Waiting
from chatroom.core.signature import Verifier, sign
from chatroom.net.journal import Lasting
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.store.base import StoreError
from chatroom.store.memory import MemoryStore


def record(token: str, expires_ms: int = 2**42) -> SessionRecord:
    return SessionRecord(token, "alice", None, None, expires_ms)


async def test_changes_are_written_in_batches_and_close_writes_the_rest() -> None:
    store = MemoryStore()
    lasting = Lasting(store, backlog=100)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(lasting.run)
            lasting.session("st-1", record("st-1"))
            lasting.session("st-2", record("st-2"))
            lasting.session("st-2", None)  # revoked before it was ever written
            lasting.nonce("n1", 5_000)
            lasting.nonce("n1", 9_000)  # a nonce keeps its first expiry
            lasting.close()
            lasting.receipt("c1", "m1", PendingReceipt("c1", "m1", 1, "tom", 2**42))
    assert await store.get_session("st-1") == record("st-1")
    assert await store.get_session("st-2") is None
    assert await store.live_nonces(0, 10) == {"n1": 5_000}
    assert len(await store.pending_receipts(10)) == 1  # recorded before run returned
    assert lasting.stats.written == 4
    assert lasting.stats.batches >= 1


async def test_a_revocation_is_known_until_it_is_stored() -> None:
    store = MemoryStore()
    await store.save_lasting(LastingChanges(sessions={"st-1": record("st-1")}))
    lasting = Lasting(store, backlog=100)
    lasting.session("st-1", None)
    assert lasting.revoked("st-1")
    assert not lasting.revoked("st-2")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(lasting.run)
            lasting.close()
    assert not lasting.revoked("st-1")
    assert await store.get_session("st-1") is None


async def test_beyond_the_backlog_new_records_are_dropped_but_revocations_kept() -> None:
    store = MemoryStore()
    await store.save_lasting(LastingChanges(sessions={"old": record("old")}))
    lasting = Lasting(store, backlog=2)
    for token in ("st-1", "st-2", "st-3"):
        lasting.session(token, record(token))
    lasting.session("old", None)
    assert lasting.stats.dropped == 1
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(lasting.run)
            lasting.close()
    assert [await store.get_session(t) is not None for t in ("st-1", "st-2", "st-3")] == [
        True,
        True,
        False,
    ]
    assert await store.get_session("old") is None


class FailingStore(MemoryStore):
    """A store whose first ``failures`` writes that revoke a token fail (a full disk),
    each after waiting for ``release``."""

    def __init__(self, failures: int = 1) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0  # writes that revoke a token
        self.writing = trio.Event()  # such a write has begun
        self.release = trio.Event()
        self.release.set()
        self.failed = trio.Event()
        self.saved = trio.Event()  # a write succeeded (a new Event each time)

    async def save_lasting(self, changes: LastingChanges) -> None:
        if None in changes.sessions.values():
            self.attempts += 1
            if self.attempts <= self.failures:
                self.writing.set()
                await self.release.wait()
                self.failed.set()
                raise StoreError("disk I/O error")
        await super().save_lasting(changes)
        self.saved.set()
        self.saved = trio.Event()


@fail_after()
async def test_a_logout_stays_one_when_storing_its_revocation_failed() -> None:
    store = FailingStore()
    async with running_server(store=store) as running:
        async with running.client() as client:
            opened = await client.login("alice")
            saved = store.saved
            while await store.get_session(opened["st"]) is None:  # written behind the reply
                await saved.wait()
                saved = store.saved
            await client.request({"cmd": "session", "op": "close"})
            await store.failed.wait()
        async with running.client() as client:
            fields = {"r": True, "st": opened["st"]}
            reply = await client.request(
                {"cmd": "session", "op": "open", "appId": "test", "peerId": "alice", **fields}
            )
            assert (reply["cmd"], reply.get("code")) == ("error", 4112), reply
    assert await store.get_session(opened["st"]) is None  # stored at the latest at shutdown


async def test_a_failed_batch_keeps_its_deletions_for_the_next_and_a_newer_change_wins() -> None:
    will = WillRecord("bob", "st-b", b"bye", 2**42)
    store = FailingStore()
    old = LastingChanges(sessions={"st-1": record("st-1")}, wills={"alice": will, "bob": will})
    await store.save_lasting(old)
    store.release = trio.Event()
    lasting = Lasting(store, backlog=100)
    lasting.session("st-1", None)
    lasting.session("st-2", record("st-2"))
    lasting.will("alice", None)
    lasting.will("bob", None)
    newer = WillRecord("bob", "st-c", b"later", 2**42)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(lasting.run)
            await store.writing.wait()
            lasting.will("bob", newer)  # set again while its deletion was being written
            store.release.set()
            await store.failed.wait()
            lasting.close()
    assert await store.get_session("st-1") is None
    assert await store.will_of("alice") is None
    assert await store.will_of("bob") == newer
    assert await store.get_session("st-2") is None  # a new record is lost with its batch
    assert (lasting.stats.failed, lasting.stats.written) == (1, 3)


async def test_kept_deletions_wait_for_the_next_change_or_close_to_be_tried_again() -> None:
    store = FailingStore(failures=3)
    await store.save_lasting(LastingChanges(sessions={"st-1": record("st-1")}))
    lasting = Lasting(store, backlog=100)
    lasting.session("st-1", None)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(lasting.run)
            await store.failed.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert (store.attempts, lasting.revoked("st-1")) == (1, True)
            lasting.nonce("n1", 2**42)
            await trio.testing.wait_all_tasks_blocked()
            assert (store.attempts, lasting.revoked("st-1")) == (2, True)
            lasting.close()  # one last try, which fails too: run returns all the same
    assert store.attempts == 3
    assert not lasting.revoked("st-1")
    assert lasting.stats.failed == 2  # the nonce; the revocation, on the last try


class SlowStore(MemoryStore):
    """Its writes of lasting state wait while ``gate`` is not set (a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.gate.set()
        self.writing = trio.Event()  # a write waits at the gate

    async def save_lasting(self, changes: LastingChanges) -> None:
        if not self.gate.is_set():
            self.writing.set()
            await self.gate.wait()
        await super().save_lasting(changes)


@fail_after()
async def test_a_token_taken_over_while_the_store_is_behind_stays_so_after_a_restart() -> None:
    store = SlowStore()
    config = {"lasting_backlog": 2}
    async with (
        running_server(config, store) as running,
        running.client() as ann,
        running.client() as phone,
        running.client() as carl,
        running.client() as new_phone,
    ):
        store.gate = trio.Event()
        await ann.login("ann")  # her token is being written ...
        await store.writing.wait()
        taken = await phone.login("bob", tag="phone")  # ... while these wait: 2 of 2
        await carl.login("carl")
        await new_phone.login("bob", tag="phone")  # takes the older phone's token over
        assert (await phone.next_push("session", "closed"))["code"] == 4111
        store.gate.set()
    async with running_server(config, store) as running, running.client() as phone:
        fields = {"r": True, "st": taken["st"], "tag": "phone"}
        reply = await phone.request(
            {"cmd": "session", "op": "open", "appId": "test", "peerId": "bob", **fields}
        )
        assert (reply["cmd"], reply.get("code")) == ("error", 4111), reply


async def test_a_change_of_a_pending_key_is_recorded_beyond_the_backlog() -> None:
    store = MemoryStore()
    lasting = Lasting(store, backlog=2)
    taken_over = dataclasses.replace(record("st-1"), taken_over=True)
    later = PendingReceipt("c1", "m1", 1, "tom", 2**43)
    lasting.session("st-1", record("st-1"))
    lasting.receipt("c1", "m1", PendingReceipt("c1", "m1", 1, "tom", 2**42))
    lasting.session("st-1", taken_over)
    lasting.receipt("c1", "m1", later)
    lasting.nonce("n1", 2**42)
    assert lasting.stats.dropped == 1  # only the nonce, a new key
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(lasting.run)
            lasting.close()
    assert await store.get_session("st-1") == taken_over
    assert await store.pending_receipts(10) == [later]


async def test_purge_deletes_expired_state_now_and_every_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    expired = {"gone": record("gone", wall_ms() - 1), "kept": record("kept")}
    await store.save_lasting(LastingChanges(sessions=dict(expired)))
    lasting = Lasting(store, backlog=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lasting.purge, 60.0, 1)
        await trio.sleep(1)
        assert await store.get_session("gone") is None
        assert lasting.stats.purged == 1
        await store.save_lasting(LastingChanges(sessions={"later": record("later", 0)}))
        await trio.sleep(60)
        assert await store.get_session("later") is None
        assert await store.get_session("kept") is not None
        nursery.cancel_scope.cancel()


# the memories that feed it


def test_receipt_book_tells_of_additions_and_deliveries_but_not_restores() -> None:
    told: list[tuple[str, str, Waiting | None]] = []
    book = ReceiptBook(10, lambda cid, mid, w: told.append((cid, mid, w)))
    book.restore([("c1", Waiting("old", 1, "tom"))])
    book.want("c1", "new", 2, "tom")
    assert told == [("c1", "new", Waiting("new", 2, "tom"))]
    assert [w.mid for w in book.delivered("c1", "jerry", 2)] == ["old", "new"]
    assert told[1:] == [("c1", "old", None), ("c1", "new", None)]


def test_event_log_merges_stored_events_before_what_memory_holds() -> None:
    stored: list[tuple[list[str], int]] = []
    log = ConvEventLog(
        per_client=3,
        on_record=lambda peers, ts, p, live: stored.append((peers, ts)),
        complete_from=2,  # made at 2: events before it are in the store only
    )
    events = [Prepared(pb.GenericCommand(cmd=pb.conv, serverTs=t)) for t in range(6)]
    assert log.complete_since("a") == 2
    log.record(["a", "b"], 4, events[4], ["tok"])
    log.record(["a"], 5, events[5], [])
    assert stored == [(["a", "b"], 4), (["a"], 5)]
    assert log.complete_since("a") == 4
    older = [(t, events[t], ["tok"] if t == 2 else []) for t in (1, 2, 3)]
    assert log.missed("a", 0, None, older) == [events[3], events[4], events[5]]  # newest 3
    assert log.missed("a", 0, "tok", older) == [events[1], events[3], events[5]]


def test_event_log_is_complete_for_unknown_clients_from_its_making_or_last_eviction() -> None:
    log = ConvEventLog(per_client=2, clients=1, complete_from=1)
    event = Prepared(pb.GenericCommand(cmd=pb.conv))
    log.record(["a"], 5, event, [])
    assert (log.complete_since("a"), log.complete_since("b")) == (5, 1)
    log.record(["b"], 7, event, [])  # "a" is forgotten: memory lacks its event at 5
    assert (log.complete_since("a"), log.complete_since("b"), log.complete_since("c")) == (6, 7, 6)


class CountingStore(MemoryStore):
    """Counts its reads of the conversation event log."""

    def __init__(self) -> None:
        super().__init__()
        self.event_reads = 0

    async def conv_events_for(
        self, peer: str, since: int, until: int | None, limit: int
    ) -> list[ConvEventRecord]:
        self.event_reads += 1
        return await super().conv_events_for(peer, since, until, limit)


@fail_after()
async def test_a_relogin_of_a_client_without_events_in_memory_reads_none_from_the_store() -> None:
    store = CountingStore()
    async with running_server(store=store) as running:
        async with running.client() as b:
            opened = await b.login("b")
        async with running.client() as again:
            fields = {"r": True, "lastPatchTime": opened["serverTs"], "st": opened["st"]}
            await again.login("b", **fields)
            assert [p for p in await again.take_pushes() if p["cmd"] == "conv"] == []
    assert store.event_reads == 0


def test_verifier_refuses_seeded_nonces_and_tells_of_new_ones() -> None:
    used: list[tuple[str, int]] = []
    v = Verifier("k", window=300, on_use=lambda nonce, until: used.append((nonce, until)))
    now = 1_000_000
    v.seed({"before": now + 100})
    sig = sign("k", "x")
    assert v.check(["x"], sig, now, "before", now * 1000) == "nonce already used"
    assert v.check(["x"], sig, now, "after", now * 1000) is None
    assert used == [("after", now + 300)]
