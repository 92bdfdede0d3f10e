"""chatroom.net.redis_link: what a node is made of before it reaches Redis."""

from __future__ import annotations

import pytest

from chatroom.net.redis_link import cluster_hub


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("redis://10.0.0.5:6379/3", "chatroom:3:"),
        ("redis://10.0.0.5:6379", "chatroom:0:"),
        ("unix:///run/redis.sock?db=2", "chatroom:2:"),
    ],
)
def test_channel_names_carry_the_database_number(url: str, prefix: str) -> None:
    # Redis shares pub/sub channels between databases: two clusters stay apart.
    link = cluster_hub(url, 100)
    assert link is not None
    assert link.hub.channel("presence") == prefix + "presence"
    assert link.hub.outgoing.capacity == 100


def test_without_a_url_a_node_is_alone() -> None:
    assert cluster_hub("", 100) is None


def test_every_node_has_its_own_id() -> None:
    first, second = cluster_hub("redis://h:1/0", 1), cluster_hub("redis://h:1/0", 1)
    assert first is not None
    assert second is not None
    assert first.hub.node != second.hub.node
