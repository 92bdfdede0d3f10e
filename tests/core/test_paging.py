"""chatroom.core.paging.select: history pages over messages held in memory. Pure.

Chatroom buffers answer ``logs`` with ``select``, the stores with their own queries; all
of them must give the same pages. So the cases come from the store contract suite
(``test_store_contract.py``: its table of examples and its plain reference
implementation), and ``select`` is checked against exactly the same expectations.
"""

from __future__ import annotations

import random

import pytest
from store_examples import EXAMPLES, FIVE, make_msg, positions, reference_page, stamps

from chatroom.core import paging as history
from chatroom.core.model import Bound, Direction, HistoryQuery, Message

NEW, OLD = Direction.NEW, Direction.OLD


def page(messages: list[Message], **kw: object) -> list[tuple[int, str]]:
    query = HistoryQuery("c1", **kw)  # type: ignore[arg-type]
    return positions(history.select(messages, query))


@pytest.mark.parametrize(("query", "expected"), EXAMPLES)
def test_examples_of_the_store_contract(query: HistoryQuery, expected: list[int]) -> None:
    messages = [m for m in FIVE if m.cid == query.cid]
    assert stamps(history.select(messages, query)) == expected


def test_result_is_ascending_whatever_the_input_order() -> None:
    shuffled = list(FIVE)
    random.Random(7).shuffle(shuffled)
    assert stamps(history.select(shuffled, HistoryQuery("c1", limit=3))) == [3, 4, 5]
    newest_first = list(reversed(FIVE))
    query = HistoryQuery("c1", limit=3, direction=NEW)
    assert stamps(history.select(newest_first, query)) == [1, 2, 3]


def test_default_direction_is_old_newest_page_first() -> None:
    assert stamps(history.select(FIVE, HistoryQuery("c1", limit=2))) == [4, 5]
    assert HistoryQuery("c1").direction is OLD


def test_ties_in_one_millisecond_are_broken_by_mid() -> None:
    x, b, c, d, a = (1, "x"), (2, "b"), (2, "c"), (2, "d"), (3, "a")
    msgs = [make_msg("c1", ts, mid) for ts, mid in (x, b, c, d, a)]
    msgs.reverse()  # the order they are held in must not matter
    assert page(msgs) == [x, b, c, d, a]
    assert page(msgs, limit=2) == [d, a]
    assert page(msgs, start=Bound(*c)) == [x, b]
    assert page(msgs, start=Bound(*c, inclusive=True), limit=2) == [b, c]
    assert page(msgs, start=Bound(2)) == [x]
    assert page(msgs, start=Bound(2, inclusive=True)) == [x, b, c, d]
    assert page(msgs, start=Bound(*c), direction=NEW) == [d, a]
    assert page(msgs, start=Bound(2), direction=NEW) == [a]
    assert page(msgs, start=Bound(2, inclusive=True), direction=NEW, limit=2) == [b, c]
    assert page(msgs, start=Bound(*b), end=Bound(*d), direction=NEW) == [c]
    assert page(msgs, start=Bound(*d), end=Bound(*b)) == [c]
    assert page(msgs, start=Bound(3), end=Bound(1), limit=2) == [c, d]
    assert page(msgs, start=Bound(1), end=Bound(3), direction=NEW, limit=2) == [b, c]
    assert page(msgs, start=Bound(2, "zz"), end=Bound(2, "a")) == [b, c, d]


def test_swapped_bounds_give_the_same_interval() -> None:
    old = HistoryQuery("c1", start=Bound(2), end=Bound(5, inclusive=True))
    new = HistoryQuery("c1", start=Bound(5, inclusive=True), end=Bound(2), direction=NEW)
    assert stamps(history.select(FIVE, old)) == [3, 4, 5]
    assert stamps(history.select(FIVE, new)) == [3, 4, 5]


def test_paging_backwards_from_the_oldest_item_visits_everything_once() -> None:
    # What the SDK's message iterator does: the next page ends before the first item
    # of the previous one, with ``t`` and ``mid`` of that item.
    msgs = [make_msg("c1", 100 + i // 3, f"m{i:02d}") for i in range(20)]
    seen: list[Message] = []
    start: Bound | None = None
    while True:
        found = history.select(msgs, HistoryQuery("c1", limit=4, start=start))
        if not found:
            break
        seen[:0] = found
        start = Bound(found[0].timestamp, found[0].mid)
    assert seen == msgs


def test_lctype_filter() -> None:
    msgs = [make_msg("c1", ts, f"m{ts:02d}", lctype=-1 if ts % 3 else -2) for ts in range(1, 13)]
    msgs.append(make_msg("c1", 13, "m13"))  # plain text: no _lctype
    assert stamps(history.select(msgs, HistoryQuery("c1", limit=3, lctype=-2))) == [6, 9, 12]
    first = HistoryQuery("c1", limit=2, lctype=-2, direction=NEW)
    assert stamps(history.select(msgs, first)) == [3, 6]
    before = HistoryQuery("c1", start=Bound(9), lctype=-2)
    assert stamps(history.select(msgs, before)) == [3, 6]
    assert history.select(msgs, HistoryQuery("c1", lctype=-5)) == []


def test_bounds_beyond_64_bits() -> None:
    huge, tiny = 2**70, -(2**70)
    assert stamps(history.select(FIVE, HistoryQuery("c1", start=Bound(huge)))) == [1, 2, 3, 4, 5]
    assert history.select(FIVE, HistoryQuery("c1", start=Bound(huge), direction=NEW)) == []
    assert history.select(FIVE, HistoryQuery("c1", start=Bound(tiny))) == []
    both = HistoryQuery("c1", start=Bound(huge), end=Bound(tiny), limit=2)
    assert stamps(history.select(FIVE, both)) == [4, 5]


def test_empty_input() -> None:
    assert history.select([], HistoryQuery("c1")) == []


def test_matches_the_reference_on_random_queries() -> None:
    rng = random.Random(20261121)
    mids = rng.sample([f"{a}{b}" for a in "abcdefghij" for b in "0123456789"], 100)
    msgs = [
        make_msg("c1", rng.randint(1, 30), mid, lctype=rng.choice([None, -1, -2])) for mid in mids
    ]

    def bound() -> Bound | None:
        if rng.random() < 0.25:
            return None
        if rng.random() < 0.5:
            m = rng.choice(msgs)
            ts, mid = m.timestamp, m.mid
        else:
            ts, mid = rng.randint(0, 31), rng.choice(mids)
        return Bound(ts, mid if rng.random() < 0.6 else None, inclusive=rng.random() < 0.5)

    for _ in range(2000):
        query = HistoryQuery(
            "c1",
            limit=rng.choice([1, 2, 3, 5, 20, 1000]),
            start=bound(),
            end=bound(),
            direction=rng.choice(list(Direction)),
            lctype=rng.choice([None, None, -1, -2]),
        )
        assert history.select(msgs, query) == reference_page(msgs, query), query
