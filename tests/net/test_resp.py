"""chatroom.net.resp: RESP2 and RESP3 written and parsed; against a real redis-server too."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import trio
from helpers import fail_after
from redis_server import RedisServer, redis_server

from chatroom.net import resp


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert resp.encode("SET", b"k\r\n", 5) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n"


def _byte_by_byte(wire: bytes) -> list[object]:
    """What a parser fed ``wire`` one byte at a time gives out: every cut is seen."""
    parser = resp.Parser()
    got: list[object] = []
    for byte in wire:
        parser.feed(bytes([byte]))
        got += parser.replies()
    return got


def test_replies_come_out_whole_however_the_bytes_are_cut() -> None:
    wire = b"+OK\r\n:42\r\n$5\r\nhe\r\no\r\n$-1\r\n*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n"
    wire += b"-ERR bad\r\n"
    got = _byte_by_byte(wire)
    error = got.pop()
    assert got == [b"OK", 42, b"he\r\no", None, [b"a", None, [1]]]
    assert isinstance(error, resp.RespError)
    assert str(error) == "ERR bad"


def test_resp3_pushes_come_out_in_order_even_from_inside_a_reply() -> None:
    # Redis 7.0 writes a message a transaction publishes to its own connection inside
    # EXEC's reply: it comes out before that reply, and the reply holds the replies
    # to the transaction's commands only.
    wire = (
        b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"  # HELLO's map
        b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
        b"*2\r\n>3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\ny\r\n:1\r\n+OK\r\n"
        b"_\r\n#t\r\n,1.5\r\n(12345678901234567890\r\n=8\r\ntxt:abcd\r\n~1\r\n:2\r\n"
        b"|1\r\n+key\r\n+value\r\n:7\r\n!7\r\nERR bad\r\n"
    )
    got = _byte_by_byte(wire)
    error = got.pop()
    assert got == [
        [b"server", b"redis"],
        [b"subscribe", b"a", 1],
        [b"message", b"a", b"y"],
        [1, b"OK"],
        None,
        1,
        b"1.5",
        12345678901234567890,
        b"abcd",
        [2],
        7,
    ]
    assert [type(x) is resp.Push for x in got[:4]] == [False, True, True, False]
    assert isinstance(error, resp.RespError)
    assert str(error) == "ERR bad"


def test_a_reply_that_is_not_resp_ends_the_connection() -> None:
    parser = resp.Parser()
    parser.feed(b"HTTP/1.1 400\r\n")
    with pytest.raises(ConnectionError):
        parser.replies()


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://10.0.0.5:6380/2", resp.Address("10.0.0.5", 6380, "", 2)),
        ("redis://:s3cret@h/0", resp.Address("h", 6379, "", 0, "", "s3cret")),
        ("unix:///run/r.sock?db=3", resp.Address("", 6379, "/run/r.sock", 3)),
    ],
)
def test_urls(url: str, address: resp.Address) -> None:
    assert resp.parse_url(url) == address


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="redis://"):
        resp.parse_url("http://h:6379")


@fail_after()
async def test_commands_pipelines_and_subscriptions_on_a_real_redis(redis: RedisServer) -> None:
    async with (
        await resp.open_connection(redis.url + "?db=1") as client,
        await resp.open_connection(redis.url) as subscriber,
    ):
        assert await client.call("SET", "k", b"\x00v") == b"OK"
        assert await client.pipeline([("GET", "k"), ("GET", "none")]) == [b"\x00v", None]
        with pytest.raises(resp.RespError, match="ERR"):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("PING") == b"PONG"  # the connection goes on
        with pytest.raises(resp.RespError, match="ERR"):
            await client.pipeline([("PING",), ("NOSUCHCOMMAND",), ("GET", "k")])
        assert await client.call("GET", "none") is None  # no reply of the pipeline left
        await subscriber.send(("SUBSCRIBE", "ch"))
        assert await subscriber.read() == [b"subscribe", b"ch", 1]
        replies = await client.pipeline([("MULTI",), ("PUBLISH", "ch", b"x" * 70_000), ("EXEC",)])
        assert replies[-1] == [1]
        assert await subscriber.read() == [b"message", b"ch", b"x" * 70_000]
    with trio.fail_after(5):
        async with await resp.open_connection(redis.url) as other:
            assert await other.call("GET", "k") is None  # db 0: the key was set in db 1


@fail_after()
async def test_a_command_larger_than_the_socket_takes_at_once_goes_whole(
    redis: RedisServer,
) -> None:
    # The connection writes the socket itself; what the socket's buffer does not take
    # at once follows as the socket drains, and the reply is read as usual.
    value = bytes(range(256)) * 16_384  # 4 MiB
    async with await resp.open_connection(redis.url + "?db=2") as client:
        assert await client.pipeline([("SET", "big", value), ("STRLEN", "big")]) == [
            b"OK",
            len(value),
        ]
        assert await client.call("GET", "big") == value


@fail_after()
async def test_posted_commands_are_answered_before_the_next_ones(redis: RedisServer) -> None:
    # ``post`` does not wait for the replies; the next call reads them first (an error
    # among them raises there), so every later reply is its own command's.
    async with await resp.open_connection(redis.url + "?db=3") as client:
        await client.post([("SET", "a", "1"), ("INCR", "a")])
        await client.post([("INCR", "a")])  # reads the two replies above first
        assert client.owed == 1
        assert await client.call("GET", "a") == b"3"
        assert client.owed == 0
        await client.post([("SET", "s", "x"), ("INCR", "s")])  # INCR of a string: an error
        with pytest.raises(resp.RespError, match="not an integer"):
            await client.call("GET", "s")
        assert await client.call("GET", "a") == b"3"  # nothing left over: in step again


@fail_after()
async def test_commands_posted_without_waiting_keep_their_order(redis: RedisServer) -> None:
    # ``post_nowait`` writes at once from synchronous code, only when nothing is owed;
    # what the socket did not take goes before anything written later, and the replies
    # still go to their commands.
    value = bytes(range(256)) * 16_384  # 4 MiB: more than the socket takes at once
    async with await resp.open_connection(redis.url + "?db=4") as client:
        answered: list[list[resp.Reply | resp.RespError] | None] = []
        assert client.post_nowait([("SET", "big", value), ("STRLEN", "big")], answered.append)
        assert client.unsent
        assert not client.post_nowait([("DEL", "big")])  # one is owed: nothing done
        await client.post([("APPEND", "big", "!")])  # after the rest of the first
        assert await client.call("STRLEN", "big") == len(value) + 1
        assert answered == [[b"OK", len(value)]]
        assert client.idle
        assert client.post_nowait([("DEL", "big")])
        assert not client.unsent
        assert await client.call("EXISTS", "big") == 0


@fail_after()
async def test_a_subscriber_takes_every_message_read_at_once(redis: RedisServer) -> None:
    async with (
        await resp.open_connection(redis.url) as client,
        await resp.open_connection(redis.url) as subscriber,
    ):
        await subscriber.send(("SUBSCRIBE", "many"))
        assert await subscriber.read_all() == [[b"subscribe", b"many", 1]]
        published = [("PUBLISH", "many", str(n)) for n in range(5)]
        await client.pipeline([("MULTI",), *published, ("EXEC",)])
        heard: list[object] = []
        while len(heard) < 5:  # one read, mostly: Redis writes them together
            heard += await subscriber.read_all()
        assert heard == [[b"message", b"many", str(n).encode()] for n in range(5)]


@fail_after()
async def test_one_resp3_connection_subscribes_and_sends_commands(redis: RedisServer) -> None:
    # A task reads the connection: pushes come to it, each reply to the command that
    # waits for it, in the order Redis wrote them (a message published before a
    # command's reply was heard when the reply comes).
    async with (
        await resp.open_connection(redis.url + "?db=4", resp3=True) as client,
        await resp.open_connection(redis.url) as other,
        trio.open_nursery() as nursery,
    ):
        await client.send(("SUBSCRIBE", "ch"))
        assert await client.read() == [b"subscribe", b"ch", 1]
        heard: list[object] = []

        async def reader() -> None:
            while True:
                heard.extend(await client.read_all())

        client.read_by_task()  # before any command waits: one reader of the socket
        nursery.start_soon(reader)
        await other.call("PUBLISH", "ch", "from another")
        transaction: list[tuple[resp.Arg, ...]] = [
            ("MULTI",),
            ("PUBLISH", "ch", "own"),
            ("SET", "k", "v"),
            ("EXEC",),
        ]
        assert await client.pipeline(transaction) == [b"OK", b"QUEUED", b"QUEUED", [1, b"OK"]]
        assert heard == [[b"message", b"ch", b"from another"], [b"message", b"ch", b"own"]]
        assert await client.call("PING") == b"PONG"  # a command's reply, while subscribed
        answered: list[object] = []
        await client.post([("GET", "k"), ("GET", "none")], answered.append)
        assert await client.call("GET", "k") == b"v"
        assert answered == [[b"v", None]]  # handed over before the later reply
        with pytest.raises(resp.RespError, match="ERR"):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("GET", "k") == b"v"  # in step
        nursery.cancel_scope.cancel()


@fail_after()
async def test_an_error_no_one_waits_for_ends_the_reading_task(redis: RedisServer) -> None:
    async with await resp.open_connection(redis.url, resp3=True) as client:
        client.read_by_task()
        await client.post([("NOSUCHCOMMAND",)])
        with pytest.raises(resp.RespError, match="ERR"):
            await client.read_all()


@fail_after()
async def test_the_time_a_reply_is_owed_since(redis: RedisServer) -> None:
    # From a send with nothing owed, moved on as replies come, none once all are in:
    # whoever checks it sees how long Redis keeps it waiting.
    async with await resp.open_connection(redis.url, resp3=True) as client:
        assert client.owed_since == math.inf
        assert await client.call("PING") == b"PONG"
        assert client.owed_since == math.inf
        sent = trio.current_time()
        await client.post([("BLPOP", "nothing", 0)])  # never answered
        assert sent <= client.owed_since <= trio.current_time()
        with trio.move_on_after(0.2) as waited:  # one batch at most in flight: the next
            await client.post([("PING",)])  # waits for the BLPOP's reply first
        assert waited.cancelled_caught
