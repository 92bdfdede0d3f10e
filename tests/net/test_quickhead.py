"""The handshake's fast path answers exactly as websockets' full parser would, or not at
all: it never accepts what the parser refuses, and its 101 is the parser's, byte for
byte (the Date line aside, which depends on the second)."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

import pytest
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.typing import Subprotocol as WsSubprotocol

from chatroom.net.quickhead import quick_request, switching

KEY = base64.b64encode(bytes(range(16))).decode()
SDK = (
    "GET / HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: lc.protobuf2.3\r\nHost: 127.0.0.1:8080\r\n\r\n"
)
BASE = (
    "GET /?subprotocol=lc.json.3 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
)

# Heads the fast path takes: what the SDK in Node and browsers send, in other spellings.
TAKEN = [
    SDK,
    BASE + "\r\n",
    BASE + "Sec-WebSocket-Protocol: lc.protobuf2.3, lc.json.3\r\n\r\n",
    BASE.replace("Upgrade: websocket", "upgrade:WebSocket") + "Origin: http://a\r\n\r\n",
    BASE.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade") + "\r\n",
    BASE.replace("Upgrade: websocket", "Upgrade:   websocket  ")
    + "Sec-WebSocket-Protocol:  lc.protobuf2.3 \r\nX-Empty:\r\n\r\n",
    BASE.replace(f"Key: {KEY}", f"Key:{KEY}   ") + "\r\n",
]
# Heads it leaves to the parser: refused there, or legal but unusual.
LEFT = [
    BASE.replace("GET", "POST") + "\r\n",
    BASE.replace("HTTP/1.1", "HTTP/1.0") + "\r\n",
    BASE.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 12") + "\r\n",
    BASE.replace(KEY, "c2hvcnQ=") + "\r\n",
    BASE.replace(KEY, KEY[:-2] + "!!") + "\r\n",
    BASE.replace(KEY, KEY[:4] + "=" + KEY[5:]) + "\r\n",  # padding inside
    BASE.replace(KEY, KEY[:-2] + "===") + "\r\n",
    BASE.replace("Upgrade: websocket", "Upgrade: h2c") + "\r\n",
    BASE.replace("Connection: Upgrade", "Connection: close") + "\r\n",
    BASE.replace("Connection: Upgrade\r\n", "") + "\r\n",
    BASE + "Upgrade: websocket\r\n\r\n",  # a header twice
    BASE + "Content-Length: 5\r\n\r\nhello",
    BASE + "Transfer-Encoding: chunked\r\n\r\n",
    BASE + "Sec-WebSocket-Protocol: a b\r\n\r\n",
    BASE + "Sec-WebSocket-Protocol:\r\n\r\n",
    BASE + "X-Tab: a\tb\r\n\r\n",
    BASE + "X-Latin: caf\xe9\r\n\r\n",
    BASE + "Bad Name: x\r\n\r\n",
    BASE + "NoColon\r\n\r\n",
    BASE.replace("\r\nHost: x\r\n", "\nHost: x\r\n") + "\r\n",  # a bare LF
    "GET /a b HTTP/1.1\r\n" + BASE.split("\r\n", 1)[1] + "\r\n",
    BASE + "".join(f"X-{k}: y\r\n" for k in range(40)) + "\r\n",  # many lines
    BASE + f"X-Long: {'y' * 5000}\r\n\r\n",
    BASE,  # not over yet
]


def _parsed(head: bytes, name: str | None) -> tuple[int, bytes]:
    """The status and the response websockets' parser gives ``head``."""

    def select(_: ServerProtocol, offered: Sequence[WsSubprotocol]) -> WsSubprotocol | None:
        return None if name is None else WsSubprotocol(name)

    protocol = ServerProtocol(select_subprotocol=select)
    reader = StreamReader()
    reader.feed_data(head)
    parser = Request.parse(reader.read_line)
    try:
        next(parser)
    except StopIteration as done:
        request = done.value
    else:
        return 0, b""
    response = protocol.accept(request)
    protocol.send_response(response)
    return response.status_code, b"".join(protocol.data_to_send())


def _no_date(response: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"", response)


@pytest.mark.parametrize("head", TAKEN)
def test_taken_heads_get_the_parsers_101(head: str) -> None:
    raw = head.encode("latin-1") + b"\x82\x80frame"
    upgrade = quick_request(raw)
    assert upgrade is not None
    assert upgrade.rest == b"\x82\x80frame"
    name = upgrade.offered[0] if upgrade.offered else None
    status, expected = _parsed(raw, name)
    assert status == 101
    assert _no_date(switching(upgrade.key, name)) == _no_date(expected)


@pytest.mark.parametrize("head", LEFT)
def test_other_heads_go_to_the_parser(head: str) -> None:
    assert quick_request(head.encode("latin-1")) is None


def test_offered_names_and_path_are_those_sent() -> None:
    upgrade = quick_request(TAKEN[2].encode())
    assert upgrade is not None
    assert upgrade.path == "/?subprotocol=lc.json.3"
    assert upgrade.offered == ["lc.protobuf2.3", "lc.json.3"]
    assert quick_request(SDK.encode()) is not None


OTHER_KEY = base64.b64encode(bytes(range(100, 116))).decode()


@pytest.mark.parametrize("head", TAKEN)
def test_a_head_seen_before_with_another_key_gets_the_parsers_101(head: str) -> None:
    # The second time the head is known but for its key (a crowd of one app's clients).
    first = quick_request(head.encode("latin-1") + b"\x82\x80frame")
    assert first is not None
    raw = head.replace(KEY, OTHER_KEY).encode("latin-1") + b"\x82\x80again"
    upgrade = quick_request(raw)
    assert upgrade is not None
    assert (upgrade.path, upgrade.offered, upgrade.rest) == (
        first.path,
        first.offered,
        b"\x82\x80again",
    )
    name = upgrade.offered[0] if upgrade.offered else None
    status, expected = _parsed(raw, name)
    assert status == 101
    assert _no_date(switching(upgrade.key, name)) == _no_date(expected)
    assert _no_date(switching(upgrade.key, name)) != _no_date(switching(first.key, name))


@pytest.mark.parametrize("head", [h for h in LEFT if KEY not in h])
def test_a_head_seen_valid_but_with_a_bad_key_goes_to_the_parser(head: str) -> None:
    assert quick_request((BASE + "\r\n").encode()) is not None
    assert quick_request(head.encode("latin-1")) is None
