"""What a login pushes is bounded in bytes (chatroom/service/unread.py, patches.py).

Missed patches, the last messages of ``unread`` and protocol-v1 offline messages share
one budget per login: ``max_reply_bytes`` or half of ``outbox_max_bytes``, whichever is
less. Over it, patches stop (the newer ones are in history), unread tuples keep their
counts without the last message, and v1 pushes keep the newest messages of the most
recently active conversations; the rest comes at a later login.
"""

from __future__ import annotations

import pytest
import trio
from helpers import Client, Cmd, fail_after, running_server, users

BIG = 60_000  # near the 64 KiB content limit: three fit in 200 kB, four do not


def big(n: int) -> str:
    return f"{n:02d}" + "x" * BIG


def only(pushes: list[Cmd], cmd: str) -> list[Cmd]:
    return [p for p in pushes if p["cmd"] == cmd]


async def relogin(client: Client, peer: str, **fields: object) -> list[Cmd]:
    await client.login(peer, **fields)
    return await client.take_pushes()


@pytest.mark.parametrize("limit", [{"max_reply_bytes": 200_000}, {"outbox_max_bytes": 400_000}])
@fail_after(20)
async def test_missed_patches_stop_at_the_budget_and_come_at_the_next_login(
    limit: dict[str, object],
) -> None:
    async with running_server(limit) as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            cid = await tom.start(["jerry"])
            acks = await tom.say_many(cid, [f"m{n}" for n in range(6)])
            before = (await jerry.take_pushes())[-1]["serverTs"]
            for n, ack in enumerate(acks):
                edit = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], "data": big(n)}
                await tom.request({"cmd": "patch", "op": "modify", "patches": [edit]})
        since = before - 1
        seen: list[str] = []
        for _ in range(2):
            async with running.client() as jerry:
                pushes = await relogin(jerry, "jerry", lastPatchTime=since, configBitmap=1)
            (push,) = only(pushes, "patch")
            assert len(push["patches"]) == 3
            seen += [item["data"] for item in push["patches"]]
            since = push["lastPatchTime"]
            assert since == push["patches"][-1]["patchTimestamp"]
        assert seen == [big(n) for n in range(6)]


@fail_after(20)
async def test_unread_tuples_over_the_budget_keep_their_counts_without_the_message() -> None:
    async with running_server({"max_reply_bytes": 200_000}) as running:
        async with users(running, "tom", "jerry") as (tom, _):
            cids = []
            for n in range(5):
                cids.append(await tom.start(["jerry"], attr={"name": f"c{n}"}))
                await tom.say(cids[-1], big(n))
                await trio.sleep(0.002)  # distinct activity times: a stable order
        async with running.client() as jerry:
            (unread,) = only(await relogin(jerry, "jerry"), "unread")
        convs = unread["convs"]
        assert [c["cid"] for c in convs] == cids[::-1]  # most recent first
        assert [c["unread"] for c in convs] == [1] * 5
        assert [c.get("data") for c in convs] == [big(4), big(3), big(2), None, None]
        assert all("mid" not in c for c in convs[3:])
        assert all(isinstance(c["timestamp"], int) for c in convs)


@fail_after(20)
async def test_v1_offline_messages_stop_at_the_budget_newest_conversation_first() -> None:
    async with running_server({"max_reply_bytes": 200_000}) as running:
        async with users(running, "tom", "jerry") as (tom, _):
            older = await tom.start(["jerry"], attr={"name": "older"})
            await tom.say_many(older, [big(n) for n in range(2)])
            await trio.sleep(0.002)
            newer = await tom.start(["jerry"], attr={"name": "newer"})
            acks = await tom.say_many(newer, [big(n) for n in range(2, 6)])
        async with running.client("lc.json.1") as jerry:
            directs = only(await relogin(jerry, "jerry"), "direct")
            assert [(d["cid"], d["msg"]) for d in directs] == [(newer, big(n)) for n in (3, 4, 5)]
            assert all(d["hasMore"] for d in directs)  # big(2) was left out
            await jerry.send({"cmd": "ack", "cid": newer, "tots": acks[-1]["t"]})
            await jerry.sync()
        async with running.client("lc.json.1") as jerry:
            directs = only(await relogin(jerry, "jerry"), "direct")
        assert [(d["cid"], d["msg"]) for d in directs] == [(older, big(0)), (older, big(1))]


@fail_after(20)
async def test_v1_a_conversation_of_only_own_recent_messages_does_not_stop_the_others() -> None:
    # The newest 2 * per + 1 messages of "newer" are all jerry's own (sent from another
    # device): that conversation has nothing to push, which must not end the v1 push as a
    # spent budget would; the less recently active "older" still gets its message.
    async with running_server({"offline_messages_per_conversation": 1}) as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            older = await tom.start(["jerry"], attr={"name": "older"})
            await tom.say(older, "to older")
            await trio.sleep(0.002)
            newer = await tom.start(["jerry"], attr={"name": "newer"})
            await tom.say(newer, "to newer")
            await jerry.say_many(newer, ["mine 1", "mine 2", "mine 3"])
        async with running.client("lc.json.1") as jerry:
            directs = only(await relogin(jerry, "jerry"), "direct")
        assert (older, "to older") in [(d["cid"], d["msg"]) for d in directs]
