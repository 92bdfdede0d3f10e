"""History over real WebSockets: ``logs`` (protocol.md 4.14; chatroom/service/history.py).

Results are always ascending. The limit is ``l`` (JS) or ``limit`` (Swift), 20 by
default, at most ``history_max_limit`` (100), and a page stops before the message that
would take it past ``max_reply_bytes`` (but always holds one). ``t``/``mid`` start,
``tt``/``tmid`` end, each exclusive unless ``tIncluded``/``ttIncluded``; ``direction``
OLD (default) or NEW; ``lctype`` filters typed messages. Only members read a normal
conversation's history.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from client_support import FAST, clients
from helpers import Client, Cmd, fail_after, running_server, users

from chatroom.client import Message, RequestError, connect


def texts(logs: list[Cmd]) -> list[str]:
    return [str(item["data"]) for item in logs]


async def filled(alice: Client, count: int) -> tuple[str, list[Cmd]]:
    """A conversation of alice and bob with ``count`` messages m0, m1, ..."""
    cid = await alice.start(["bob"])
    acks = await alice.say_many(cid, [f"m{i}" for i in range(count)])
    return cid, acks


@fail_after()
async def test_default_limit_is_20_newest_in_ascending_order() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid, acks = await filled(alice, 25)
        logs = await bob.logs(cid)
        assert texts(logs) == [f"m{i}" for i in range(5, 25)]
        item = logs[-1]
        assert (item["msgId"], item["timestamp"]) == (acks[-1]["uid"], acks[-1]["t"])
        assert (item["from"], item["convType"]) == ("alice", 1)


@pytest.mark.parametrize("field", ["l", "limit"])
@fail_after()
async def test_limit_as_l_or_limit(field: str) -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid, _ = await filled(alice, 10)
        assert texts(await bob.logs(cid, **{field: 3})) == ["m7", "m8", "m9"]
        assert texts(await bob.logs(cid, **{field: 0})) == texts(await bob.logs(cid))


@fail_after(20)
async def test_limit_is_clamped_to_100_by_default() -> None:
    # The seeds' rule: at most 100 messages per query (features.md F54).
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid, _ = await filled(alice, 105)
        logs = await bob.logs(cid, l=5000)
        assert texts(logs) == [f"m{i}" for i in range(5, 105)]


@fail_after()
async def test_limit_clamp_is_configurable() -> None:
    overrides = {"history_max_limit": 4, "history_default_limit": 2}
    async with running_server(overrides) as running, users(running, "alice", "bob") as (a, b):
        cid, _ = await filled(a, 10)
        assert texts(await b.logs(cid, l=100)) == ["m6", "m7", "m8", "m9"]
        assert texts(await b.logs(cid)) == ["m8", "m9"]


@fail_after()
async def test_paging_backwards_with_t_and_mid_visits_everything_once() -> None:
    async with running_server() as running, clients(running.url, "alice", "bob") as (alice, bob):
        cid = await alice.create_conversation(["bob"])
        sent = [await alice.send(cid, f"m{i}") for i in range(23)]
        seen: list[Message] = []
        page = await bob.history(cid, 5)
        while page:
            seen[:0] = page
            page = await bob.history(cid, 5, before=page[0])  # its t and mid
        assert [item.mid for item in seen] == [s.mid for s in sent]


@fail_after()
async def test_start_bound_inclusive_and_direction_new() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid, acks = await filled(alice, 10)
        at = {"t": acks[5]["t"], "mid": acks[5]["uid"]}
        assert texts(await bob.logs(cid, l=2, **at)) == ["m3", "m4"]
        assert texts(await bob.logs(cid, l=2, tIncluded=True, **at)) == ["m4", "m5"]
        assert texts(await bob.logs(cid, l=2, direction="NEW", **at)) == ["m6", "m7"]
        assert texts(await bob.logs(cid, l=2, direction="NEW", tIncluded=True, **at)) == [
            "m5",
            "m6",
        ]
        assert texts(await bob.logs(cid, l=3, direction="NEW")) == ["m0", "m1", "m2"]


@fail_after()
async def test_interval_with_end_bound_in_either_order() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid, acks = await filled(alice, 10)
        start = {"t": acks[2]["t"], "mid": acks[2]["uid"]}
        end = {"tt": acks[6]["t"], "tmid": acks[6]["uid"]}
        new = await bob.logs(cid, direction="NEW", **start, **end)
        assert texts(new) == ["m3", "m4", "m5"]
        inclusive = await bob.logs(
            cid, direction="NEW", tIncluded=True, ttIncluded=True, **start, **end
        )
        assert texts(inclusive) == ["m2", "m3", "m4", "m5", "m6"]
        # OLD reads from the later bound back to the earlier one: the same interval.
        later = {"t": acks[6]["t"], "mid": acks[6]["uid"]}
        earlier = {"tt": acks[2]["t"], "tmid": acks[2]["uid"]}
        assert texts(await bob.logs(cid, **later, **earlier)) == ["m3", "m4", "m5"]
        # Bounds in the wrong order for the direction are swapped, not an empty page.
        swapped = await bob.logs(cid, direction="NEW", l=2, **later, **earlier)
        assert texts(swapped) == ["m3", "m4"]


@fail_after()
async def test_lctype_filter() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid = await alice.start(["bob"])
        image = '{"_lctype":-2,"_lcfile":{"url":"http://x/%d.png"}}'
        contents = [
            image % 1,
            "plain",
            '{"_lctype":-1,"_lctext":"text"}',
            image % 2,
            "{not json",
            image % 3,
        ]
        await alice.say_many(cid, contents)
        assert texts(await bob.logs(cid, lctype=-2)) == [image % 1, image % 2, image % 3]
        assert texts(await bob.logs(cid, lctype=-2, l=1)) == [image % 3]
        assert texts(await bob.logs(cid, lctype=-1)) == ['{"_lctype":-1,"_lctext":"text"}']
        assert await bob.logs(cid, lctype=-5) == []
        assert texts(await bob.logs(cid)) == contents  # verbatim, whatever they hold


@fail_after()
async def test_only_members_read_history() -> None:
    async with running_server() as running, clients(running.url, "alice", "x") as (a, x):
        cid = await a.create_conversation(["bob"])
        for text in ("m0", "m1", "m2"):
            await a.send(cid, text)
        with pytest.raises(RequestError) as refused:
            await x.history(cid)
        assert refused.value.code == 4312
        with pytest.raises(RequestError) as unknown:
            await x.history("f" * 24)
        assert unknown.value.code == 4303
        assert [item.text for item in await a.history(cid)] == ["m0", "m1", "m2"]


@fail_after()
async def test_empty_history_is_an_empty_list() -> None:
    async with running_server() as running, connect(running.url, "alice", FAST) as alice:
        cid = await alice.create_conversation(["bob"])
        assert await alice.history(cid) == []  # a logs reply, not an error


@fail_after()
async def test_chatroom_history_is_the_recent_buffer_without_transient_messages() -> None:
    overrides = {"chatroom_buffer": 3}
    async with running_server(overrides) as running, users(running, "host", "v") as (host, v):
        started = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = started["cid"]
        await host.say_many(cid, ["r0", "r1"])
        await host.say(cid, "typing", transient=True)
        await host.say_many(cid, ["r2", "r3"])
        # Anyone may read a chatroom's recent messages, viewer or not.
        logs = await v.logs(cid)
        assert texts(logs) == ["r1", "r2", "r3"]
        assert logs[0]["convType"] == 2
        assert texts(await v.logs(cid, l=1)) == ["r3"]
        assert texts(await v.logs(cid, direction="NEW", l=2)) == ["r1", "r2"]


@fail_after()
async def test_edited_and_recalled_messages_come_back_patched_with_their_time() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid, acks = await filled(alice, 3)
        patches = [
            {"cid": cid, "mid": acks[0]["uid"], "timestamp": acks[0]["t"], "data": "m0 v2"},
            {"cid": cid, "mid": acks[1]["uid"], "timestamp": acks[1]["t"], "recall": True},
        ]
        reply = await alice.request({"cmd": "patch", "op": "modify", "patches": patches})
        logs = await bob.logs(cid)
        assert texts(logs) == ["m0 v2", '{"_lctype":-127}', "m2"]
        assert [item["msgId"] for item in logs] == [a["uid"] for a in acks]  # same ids
        assert [item["timestamp"] for item in logs] == [a["t"] for a in acks]  # same place
        assert logs[0]["patchTimestamp"] < logs[1]["patchTimestamp"] == reply["lastPatchTime"]
        assert "patchTimestamp" not in logs[2]


@fail_after()
async def test_ack_and_read_times_only_in_two_member_conversations() -> None:
    async with (
        running_server() as running,
        users(running, "alice", "bob", "carol") as (alice, bob, carol),
    ):
        cid = await alice.start(["bob"])
        acks = []
        for text in ("m0", "m1", "m2"):
            acks.append(await alice.say(cid, text))
            await trio.sleep(0.002)  # receipts are times: one message per millisecond
        await bob.send({"cmd": "ack", "cid": cid, "tots": acks[1]["t"]})
        await bob.send({"cmd": "read", "convs": [{"cid": cid, "timestamp": acks[0]["t"]}]})
        await bob.sync()
        logs = await alice.logs(cid)
        assert [(i.get("ackAt"), i.get("readAt")) for i in logs] == [
            (acks[1]["t"], acks[0]["t"]),
            (acks[1]["t"], None),
            (None, None),
        ]
        group = await alice.start(["bob", "carol"])
        ack = await alice.say(group, "to both")
        await bob.send({"cmd": "read", "cid": group})
        await carol.send({"cmd": "ack", "cid": group, "tots": ack["t"]})
        await carol.sync()
        await bob.sync()
        (item,) = await alice.logs(group)
        assert "ackAt" not in item
        assert "readAt" not in item


BIG = 60_000  # a message near the 64 KiB content limit


def big(n: int) -> str:
    return f"{n:02d}" + "x" * BIG


@fail_after(20)
async def test_page_of_big_messages_stops_at_max_reply_bytes_and_paging_goes_on() -> None:
    # 3 big messages fit in 200 kB, 4 do not: pages are cut by bytes, not by count,
    # and a client that pages from the oldest item of each page still sees everything.
    overrides = {"max_reply_bytes": 200_000}
    async with running_server(overrides) as running, users(running, "alice", "bob") as (a, b):
        cid = await a.start(["bob"])
        await a.say_many(cid, [big(n) for n in range(8)])
        newest = await b.logs(cid, l=100)
        assert texts(newest) == [big(n) for n in (5, 6, 7)]
        oldest = await b.logs(cid, l=100, direction=2)  # NEW: filled from the oldest end
        assert texts(oldest) == [big(n) for n in (0, 1, 2)]
        assert texts(await b.all_logs(cid, page=100)) == [big(n) for n in range(8)]
        assert texts(await b.logs(cid, l=2)) == [big(6), big(7)]  # small pages unchanged


@fail_after(20)
async def test_a_message_bigger_than_max_reply_bytes_still_comes_alone() -> None:
    overrides = {"max_reply_bytes": 1000}
    async with running_server(overrides) as running, users(running, "alice", "bob") as (a, b):
        cid = await a.start(["bob"])
        await a.say_many(cid, [big(0), "small", big(1)])
        assert texts(await b.logs(cid)) == [big(1)]
        assert texts(await b.all_logs(cid)) == [big(0), "small", big(1)]


@fail_after()
async def test_mention_lists_count_toward_max_message_bytes() -> None:
    # Mentions are stored with the message and come back in every history item: a
    # 1 MiB frame of mentions would otherwise make one item of 1 MiB.
    overrides = {"max_message_bytes": 1000}
    async with running_server(overrides) as running, users(running, "alice", "bob") as (a, b):
        cid = await a.start(["bob"])
        mentions = [f"user{n:05d}" for n in range(100)]  # 900 bytes
        ack = await a.say(cid, "x" * 100, mentionPids=mentions)
        too_many = await a.request(
            {"cmd": "direct", "cid": cid, "msg": "x" * 101, "mentionPids": mentions}
        )
        assert too_many["code"] == 4109
        edit = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], "data": "y" * 101}
        refused = await a.request(
            {"cmd": "patch", "op": "modify", "patches": [{**edit, "mentionPids": mentions}]}
        )
        assert (refused["cmd"], refused["code"]) == ("error", 4109)
        (item,) = await b.logs(cid)
        assert (item["data"], len(item["mentionPids"])) == ("x" * 100, 100)


@fail_after(1000)  # virtual seconds: every flush waits for write_delay
async def test_a_page_as_big_as_the_bound_fits_beside_what_is_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Every flush waits write_delay, so bob's ack sits in his outbox when his logs page
    # is queued behind it: a page as big as the reply bound must still fit there, not
    # close him as a slow consumer (4120).
    overrides = {"write_delay": 0.5, "write_delay_threshold": 0}
    async with running_server(overrides) as running, users(running, "alice", "bob") as (a, b):
        cid = await a.start(["bob"])
        for tens in range(10):  # bob takes the pushes as they come
            await a.say_many(cid, [f"{tens}{n}" + "x" * 30_000 for n in range(10)])
            await b.take_pushes()
        ack, page = await b.pipeline(
            [{"cmd": "direct", "cid": cid, "msg": "hi"}, {"cmd": "logs", "cid": cid, "l": 100}]
        )
        assert ack["cmd"] == "ack", ack
        assert page["cmd"] == "logs", page
        sizes = [len(item["data"]) for item in page["logs"]]
        bound = running.server.config.reply_bytes
        assert bound - 31_000 < sum(sizes) <= bound  # near the bound, within it
        assert page["logs"][-1]["data"] == "hi"
        assert texts(await b.logs(cid, l=1)) == ["hi"]  # and bob is still connected
