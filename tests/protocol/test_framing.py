"""Client frames parsed by ``FrameReader`` (chatroom/protocol/framing.py): what RFC
6455 requires of them, checked frame by frame, whatever way the bytes are split."""

from __future__ import annotations

import pytest
from helpers import masked_frame as masked

from chatroom.protocol.framing import (
    NO_STATUS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_frame,
    close_payload,
    unmask,
)


def test_unmask_is_its_own_inverse_for_every_length() -> None:
    key = b"\x01\x80\xff\x7f"
    for n in range(0, 12):
        data = bytes(range(n))
        assert unmask(unmask(data, key), key) == data
        assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_frames_of_every_length_encoding_split_anywhere_come_out_whole(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    wire = masked(OP_BINARY, payload) + masked(OP_TEXT, b"after")
    cuts = sorted({1, 2, 3, 5, 9, 14, len(wire) // 2, len(wire) - 1} - {0})
    reader = FrameReader(max_size=1 << 20)
    got = []
    at = 0
    for cut in [*cuts, len(wire)]:
        frames, error = reader.feed(wire[at:cut])
        assert error is None
        got += frames
        at = cut
    assert got == [(OP_BINARY, True, payload), (OP_TEXT, True, b"after")]
    assert reader._buffer == b""  # nothing held between frames


def test_frames_that_come_a_byte_at_a_time_come_out_whole() -> None:
    payload = bytes(i % 251 for i in range(1000))
    wire = masked(OP_BINARY, payload) + masked(OP_PING, b"p") + masked(OP_TEXT, b"t")
    reader = FrameReader(max_size=1 << 20)
    got = []
    for k in range(len(wire)):
        frames, error = reader.feed(wire[k : k + 1])
        assert error is None
        got += frames
    assert got == [(OP_BINARY, True, payload), (OP_PING, True, b"p"), (OP_TEXT, True, b"t")]
    assert reader._buffer == b""


def test_fragments_and_interleaved_control_frames_keep_their_order() -> None:
    reader = FrameReader(max_size=100)
    wire = (
        masked(OP_TEXT, b"he", fin=False)
        + masked(OP_PING, b"p")
        + masked(OP_CONT, b"l", fin=False)
        + masked(OP_CONT, b"lo")
    )
    frames, error = reader.feed(wire)
    assert error is None
    assert frames == [
        (OP_TEXT, False, b"he"),
        (OP_PING, True, b"p"),
        (OP_CONT, False, b"l"),
        (OP_CONT, True, b"lo"),
    ]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (masked(OP_TEXT, b"x")[:1] + bytes((1,)) + b"x", 1002),  # not masked
        (masked(OP_TEXT, b"x", first_extra=0x40), 1002),  # a reserved bit (no extension)
        (masked(0x3, b"x"), 1002),  # a reserved opcode
        (masked(OP_PING, b"x", fin=False), 1002),  # a fragmented control frame
        (masked(OP_PING, b"x" * 126), 1002),  # a control frame over 125 bytes
        (masked(OP_CONT, b"x"), 1002),  # a continuation of nothing
        (masked(OP_TEXT, b"a", fin=False) + masked(OP_TEXT, b"b"), 1002),  # no continuation
        (masked(OP_BINARY, b"x" * 101), 1009),  # one frame over max_size
        (masked(OP_TEXT, b"x" * 60, fin=False) + masked(OP_CONT, b"x" * 41), 1009),  # fragments
    ],
    ids=[
        "unmasked",
        "rsv",
        "opcode",
        "fragmented-ping",
        "long-ping",
        "stray-cont",
        "no-cont",
        "big",
        "big-fragments",
    ],
)
def test_protocol_violations_stop_parsing_with_their_close_code(wire: bytes, code: int) -> None:
    reader = FrameReader(max_size=100)
    before = masked(OP_TEXT, b"ok")
    frames, error = reader.feed(before + wire + masked(OP_TEXT, b"never"))
    assert error is not None
    assert error.code == code
    assert frames[0] == (OP_TEXT, True, b"ok")
    assert (OP_TEXT, True, b"never") not in frames


@pytest.mark.parametrize(
    "wire",
    [
        masked(OP_BINARY, b"xy"),
        masked(OP_TEXT, b"x" * 100),  # at max_size
        masked(OP_TEXT, b"x")[:1] + bytes((1,)) + b"x",  # not masked
        masked(OP_TEXT, b"xy", first_extra=0x40),  # a reserved bit
        masked(0x3, b"xy"),  # a reserved opcode
        masked(OP_BINARY, b"xy", fin=False),  # a message's first fragment
        masked(OP_PING, b"xy"),
        masked(OP_PING, b"x" * 126),  # a control frame over 125 bytes
        masked(OP_CONT, b"xy"),  # a continuation of nothing
        masked(OP_BINARY, b"x" * 101),  # over max_size
    ],
    ids=["binary", "max", "unmasked", "rsv", "opcode", "no-fin", "ping", "ping126", "cont", "big"],
)
def test_a_lone_frame_in_a_read_is_checked_as_any_other(wire: bytes) -> None:
    # A read that holds one whole short frame, as a client's request nearly always
    # does, is parsed as the same frame after another one in a read.
    alone, after = FrameReader(max_size=100), FrameReader(max_size=100)
    frames, error = alone.feed(wire)
    frames_after, error_after = after.feed(masked(OP_TEXT, b"ok") + wire)
    assert frames == frames_after[1:]
    assert (error and (error.code, error.reason)) == (
        error_after and (error_after.code, error_after.reason)
    )
    more = masked(OP_CONT, b"!") + masked(OP_TEXT, b"next")
    assert _outcome(alone.feed(more)) == _outcome(after.feed(more))


def _outcome(
    fed: tuple[list[tuple[int, bool, bytes]], FrameError | None],
) -> tuple[list[tuple[int, bool, bytes]], int | None]:
    return fed[0], None if fed[1] is None else fed[1].code


def test_a_lone_frame_in_a_read_within_a_fragmented_message_must_continue_it() -> None:
    reader = FrameReader(max_size=100)
    assert reader.feed(masked(OP_TEXT, b"he", fin=False)) == ([(OP_TEXT, False, b"he")], None)
    frames, error = reader.feed(masked(OP_TEXT, b"llo"))
    assert frames == []
    assert error is not None
    assert (error.code, error.reason) == (1002, "expected continuation frame")


def test_a_lone_frame_after_a_partial_one_completes_it_first() -> None:
    reader = FrameReader(max_size=100)
    first, second = masked(OP_BINARY, b"abc"), masked(OP_BINARY, b"de")
    assert reader.feed(first[:4]) == ([], None)
    wire = first[4:] + second
    assert reader.feed(wire) == ([(OP_BINARY, True, b"abc"), (OP_BINARY, True, b"de")], None)
    assert reader.feed(second) == ([(OP_BINARY, True, b"de")], None)


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    reader = FrameReader(max_size=100)
    header = masked(OP_BINARY, b"x" * 70_000)[:14]  # 64-bit length and key, no payload
    frames, error = reader.feed(header)
    assert frames == []
    assert error is not None
    assert error.code == 1009


@pytest.mark.parametrize("split", [3, 14, 60, 150, 170])
def test_past_a_frame_refused_for_its_size_the_next_frames_are_parsed(split: int) -> None:
    # A refused frame's header is sound: its payload is skipped, wherever the reads
    # cut it, so that the client's close frame after it is found.
    reader = FrameReader(max_size=100)
    wire = masked(OP_BINARY, b"x" * 150) + masked(OP_CLOSE, b"\x03\xf1")
    frames, error = reader.feed(wire[:split])
    later: list[tuple[int, bool, bytes]] = []
    if error is None:  # the header was not all in yet
        assert frames == []
        frames, error = reader.feed(wire[split : split + 1])
        split += 1
        while error is None:
            frames, error = reader.feed(wire[split : split + 1])
            split += 1
    assert error is not None
    assert error.code == 1009
    for k in range(split, len(wire)):
        frames, error = reader.feed(wire[k : k + 1])
        assert error is None
        later += frames
    frames, error = reader.feed(b"")  # the refused frame was all in: its rest is held
    later += frames
    assert later == [(OP_CLOSE, True, b"\x03\xf1")]


def test_past_any_other_violation_nothing_more_is_parsed() -> None:
    reader = FrameReader(max_size=100)
    frames_before, error = reader.feed(masked(OP_TEXT, b"ok") + masked(0x3, b"x"))
    assert frames_before == [(OP_TEXT, True, b"ok")]
    assert error is not None
    assert error.code == 1002
    assert reader.feed(masked(OP_CLOSE, b"\x03\xe8")) == ([], None)


def test_close_payloads() -> None:
    assert close_payload(b"") == (NO_STATUS, "")
    assert close_payload(b"\x0f\xa0bye") == (4000, "bye")
    assert close_payload(b"\x03\xe8") == (1000, "")
    for bad, code in [
        (b"\x03", 1002),  # one byte
        (b"\x03\xed", 1002),  # 1005 is never sent
        (b"\x03\xee", 1002),  # 1006 neither
        (b"\x13\x88", 1002),  # 5000
        (b"\x03\xe8\xff", 1007),  # reason not UTF-8
    ]:
        with pytest.raises(FrameError) as info:
            close_payload(bad)
        assert info.value.code == code


def test_close_frames_fit_the_limit_and_echo_no_status_as_empty() -> None:
    assert close_frame(NO_STATUS, "") == bytes((0x80 | OP_CLOSE, 0))
    frame = close_frame(4120, "é" * 100)
    assert frame[1] <= 125
    assert close_payload(frame[2:])[0] == 4120  # whole characters only
