"""chatroom.client against a real server on 127.0.0.1: what a script using the
library sees (typed events, errors, the automatic reconnection)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from client_support import FAST, next_message, next_of
from helpers import fail_after, running_server
from stall_proxy import StallProxy

from chatroom.client import (
    ConnectionLost,
    ConvEvent,
    Message,
    RequestError,
    Shed,
    StateChange,
    SyncClient,
    connect,
)
from chatroom.client.trio_client import Client


async def state(client: Client, wanted: str) -> StateChange:
    while True:
        event = await next_of(client, StateChange)
        assert isinstance(event, StateChange)
        if event.state == wanted:
            return event


@fail_after()
async def test_two_viewers_chat_in_a_chatroom_with_priorities() -> None:
    async with (
        running_server() as server,
        connect(server.url, "Tom", FAST) as tom,
        connect(server.url, "Jerry", FAST) as jerry,
    ):
        room = await tom.open_chatroom("直播间 🎉")
        assert await jerry.open_chatroom("直播间 🎉") == room  # found by name, not made again
        assert await tom.count(room) == 2
        sent = await tom.send(room, "你好 👋", priority="high")
        got = await next_message(jerry)
        assert (got.cid, got.mid, got.sender) == (room, sent.mid, "Tom")
        assert (got.text, got.priority) == ("你好 👋", "high")
        await jerry.send(room, "typing", transient=True)
        typing = await next_message(tom)
        assert typing.transient
        assert typing.priority is None
        assert [m.text for m in await jerry.history(room)] == ["你好 👋"]
        await jerry.leave(room)
        assert await tom.count(room) == 1


@fail_after(30)
async def test_a_client_that_fell_behind_counts_the_messages_it_missed() -> None:
    # Tom's connection goes through a proxy that stops reading for him: the server
    # sheds what does not fit his outbox, then tells him how many.
    settings = {"outbox_max_frames": 16, "shed_backlog_normal": 10**6, "shed_lag_normal": 3600}
    async with running_server(settings) as running, trio.open_nursery() as nursery:
        proxy = StallProxy(running.ws_port)
        port = await nursery.start(proxy.run)
        async with (
            connect(f"ws://127.0.0.1:{port}/", "Tom", FAST) as tom,
            connect(running.url, "Jerry", FAST) as jerry,
        ):
            room = await tom.open_chatroom("busy")
            await jerry.join(room)
            proxy.stall()
            shed = running.server.context.counters.shed
            sent = 0
            while shed.normal < 50:
                await jerry.send(room, f"{sent:05d}" + "x" * 30_000)
                sent += 1
            proxy.resume()
            got = told = 0
            while got + told < sent:
                event = await tom.next_event()
                if isinstance(event, Message):
                    got += 1
                elif isinstance(event, Shed):
                    told = event.count
            assert tom.missed == told == sent - got == shed.normal
        nursery.cancel_scope.cancel()


@fail_after()
async def test_several_tasks_reading_events_each_get_theirs() -> None:
    async with (
        running_server() as server,
        connect(server.url, "Tom", FAST) as tom,
        connect(server.url, "Jerry", FAST) as jerry,
    ):
        room = await tom.create_chatroom("lobby")
        await jerry.join(room)
        got: list[str] = []

        async def reader() -> None:
            got.append((await next_message(tom)).text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()  # both readers are waiting
            await jerry.send(room, "one")
            await jerry.send(room, "two")
        assert sorted(got) == ["one", "two"]


@fail_after()
async def test_conversation_events_history_and_paging() -> None:
    async with (
        running_server() as server,
        connect(server.url, "Tom", FAST) as tom,
        connect(server.url, "Jerry", FAST) as jerry,
    ):
        cid = await tom.create_conversation(["Jerry"], "Tom & Jerry")
        joined = await next_of(jerry, ConvEvent)
        assert joined == ConvEvent("joined", cid, "Tom")
        for text in ("one", "two", "three"):
            await tom.send(cid, text, mentions=["Jerry"])
        got = await next_message(jerry)
        assert (got.text, got.mentions) == ("one", ("Jerry",))
        assert await tom.count(cid) == 2
        newest = await jerry.history(cid, limit=2)
        assert [m.text for m in newest] == ["two", "three"]
        older = await jerry.history(cid, limit=2, before=newest[0])
        assert [m.text for m in older] == ["one"]
        await jerry.mark_read(cid)


@fail_after()
async def test_refusals_are_request_errors_with_the_servers_code() -> None:
    async with running_server() as server, connect(server.url, "Tom", FAST) as tom:
        with pytest.raises(RequestError) as refused:
            await tom.send("no-such-conversation", "hello")
        assert refused.value.code == 4401
        room = await tom.create_chatroom("lobby")
        await tom.send(room, "still connected")
        with pytest.raises(RequestError) as bad_login:
            async with connect(server.url, "x" * 200, FAST):
                pass
        assert bad_login.value.code == 4103


@fail_after()
async def test_connecting_to_nothing_fails_clearly() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionLost, match="cannot connect"):
        async with connect(f"ws://127.0.0.1:{port}", "Tom", FAST):
            pass


@fail_after(30)
async def test_reconnects_and_rejoins_the_chatroom_after_a_server_restart(tmp_path: Path) -> None:
    db = {"db": str(tmp_path / "chat.db")}
    async with running_server(db) as first:
        port = first.ws_port
        viewer = Client(first.url, "Jerry", FAST)
        async with trio.open_nursery() as nursery:
            await nursery.start(viewer.run)
            room = await viewer.open_chatroom("lobby")
            first.server.shutdown.set()
            closed = await state(viewer, "reconnecting")
            assert closed.code == 1001  # going away: the server shut down
            async with (
                running_server({**db, "port": port}) as second,
                connect(second.url, "Tom", FAST) as tom,
            ):
                await state(viewer, "live")
                assert viewer.room == room
                await tom.join(room)
                assert await tom.count(room) == 2  # the viewer is back in the room
                await tom.send(room, "welcome back")
                assert (await next_message(viewer)).text == "welcome back"
                await viewer.stop()
                assert (await state(viewer, "closed")).state == "closed"


@fail_after()
async def test_the_blocking_client_chats_from_a_thread() -> None:
    async with running_server() as server, connect(server.url, "Tom", FAST) as tom:
        room = await tom.create_chatroom("lobby")

        def script() -> tuple[int, str]:
            with SyncClient(server.url, "Jerry", FAST) as jerry:
                jerry.join(room)
                viewers = jerry.count(room)
                jerry.send(room, "from a thread", priority="low")
                return viewers, jerry.history(room)[-1].text

        assert await trio.to_thread.run_sync(script) == (2, "from a thread")
        got = await next_message(tom)
        assert (got.sender, got.priority) == ("Jerry", "low")
