"""chatroom.core.replybudget: cutting lists of items by encoded size, at least one kept."""

from __future__ import annotations

from chatroom.core.replybudget import Budget, fitting, item_size
from chatroom.protocol import messages_pb2 as pb


def test_fitting_counts_the_leading_items_within_the_limit() -> None:
    assert fitting([40, 40, 40], 100) == 2
    assert fitting([40, 60, 1], 100) == 2  # exactly at the limit fits
    assert fitting([40, 40], 100) == 2
    assert fitting([], 100) == 0


def test_fitting_keeps_one_item_bigger_than_the_limit() -> None:
    assert fitting([500, 1], 100) == 1


def test_budget_grants_the_first_item_then_only_what_fits() -> None:
    budget = Budget(100)
    assert budget.take(150)
    assert not budget.take(1)
    budget = Budget(100)
    assert budget.take(60)
    assert not budget.take(50)
    assert budget.take(40)
    assert budget.left == 0


def test_item_size_covers_the_encoded_field() -> None:
    reply = pb.LogsCommand()
    item = reply.logs.add(data="x" * 70_000, msgId="m")
    assert item_size(item) - 5 < reply.ByteSize() <= item_size(item)
