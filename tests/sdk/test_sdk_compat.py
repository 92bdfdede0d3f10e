"""Three generations of the official JS SDK over the core flows: ``leancloud-realtime``
3.5.7, 4.3.1 and 5.0.0-rc.8, each with its own typed-messages plugin (2.0.0, 3.1.0,
4.0.2), installed side by side (``tests/sdk/package.json`` aliases).

One Node process per generation (``tests/sdk/scenarios/compat_core.js``) runs: login,
1:1 and group messages both ways, member events, a receipt, an image message, a
chatroom, history, unread counts at a re-login (protocol v3), two clients on one
Realtime (the ``peerId`` rule of README "How it is built": 3.x drops a push without
``peerId``, 4.x and 5.x hand it to their first client), temporary conversations and
protocol-v1 offline messages (3.x, 4.x). The fixtures are in ``tests/sdk/conftest.py``.
"""

from __future__ import annotations

import pytest
from sdk_harness import SLACK_MS, Obs, Server

pytestmark = pytest.mark.timeout(120)

GENERATIONS = [
    pytest.param("v3", "3.5.7", id="3.5.7"),
    pytest.param("v4", "4.3.1", id="4.3.1"),
    pytest.param("v5", "5.0.0-rc.8", id="5.0.0-rc.8"),
]


def texts(messages: list[Obs]) -> list[tuple[str, str]]:
    return [(m["from"], m["text"]) for m in messages]


def joined(*members: str, by: str = "tom") -> Obs:
    return {"initBy": by, "members": sorted(members)}


@pytest.mark.parametrize(("sdk", "version"), GENERATIONS)
def test_core_flows(server: Server, sdk: str, version: str) -> None:
    obs = server.run("compat_core", {"sdk": sdk, "noBinary": False})
    assert obs["sdk"] == version
    assert obs["protocol"] == "lc.protobuf2.3"
    check_messages(obs)
    check_member_events(obs["events"])
    check_second_client_and_v1(obs, sdk)
    check_temporary(obs["temp"], sdk)


def check_messages(obs: Obs) -> None:
    """1:1, group, image, receipt, chatroom, history, unread (before the fix 3.x saw no
    push at all)."""
    assert texts(obs["direct"]["tom"]) == [("jerry", "hi tom")]
    assert texts(obs["direct"]["jerry"]) == [("tom", "hi jerry")]
    group = obs["group"]
    assert texts(group["tom"]) == [("spike", "group: from spike")]
    assert texts(group["spike"]) == [("tom", "group: from tom"), ("tom", "a cat")]
    assert texts(group["jerry"]) == [
        ("tom", "group: from tom"),
        ("spike", "group: from spike"),
        ("tom", "a cat"),
        ("tom", "while spike was away 1"),
        ("tom", "while spike was away 2"),
    ]
    # the plugin's ImageMessage on both ends, its file an AV.File
    assert obs["image"] == {
        "class": "ImageMessage",
        "text": "a cat",
        "file": "https://example.com/cat.png",
        "fileIsAV": True,
    }
    receipts = obs["receipts"]
    assert receipts["sentAt"] <= receipts["deliveredAt"] <= receipts["sentAt"] + 5 * SLACK_MS
    assert receipts["readAt"] == receipts["sentAt"]
    assert texts(obs["room"]["tom"]) == [("jerry", "room: from jerry")]
    assert texts(obs["room"]["jerry"]) == [("tom", "room: from tom")]
    assert texts(obs["history"]) == [
        ("tom", "hi jerry"),
        ("jerry", "hi tom"),
        ("tom", "please confirm"),
    ]
    # every message of others since spike's last read (none): 2 online, 2 while away
    assert obs["spikeUnread"] == {
        "count": 4,
        "last": "while spike was away 2",
        "lastAway": "while spike was away 2",
    }


def check_member_events(events: Obs) -> None:
    """The group created, spike removed, spike added back."""
    created, back = joined("jerry", "spike", "tom"), joined("spike")
    invited = {"initBy": "tom", "members": None}
    for user in ("tom", "jerry"):
        assert events[user] == {
            "INVITED": [invited],
            "KICKED": [],
            "MEMBERS_JOINED": [created, back],
            "MEMBERS_LEFT": [joined("spike")],
        }
    assert events["spike"] == {
        "INVITED": [invited, invited],
        "KICKED": [invited],
        "MEMBERS_JOINED": [created, back],
        "MEMBERS_LEFT": [],
    }


def check_second_client_and_v1(obs: Obs, sdk: str) -> None:
    """bob, second client of a Realtime, gets his own unread counts (v3) and offline
    messages (v1), ann nothing of his."""
    shared = obs["shared"]
    assert shared["bobUnread"] == {"count": 2, "last": "bob 2"}
    assert shared["annUnreadConvs"] == []
    assert shared["ann"] == [
        {"text": "ann alone", "convId": "forAnn"},
        {"text": "ann shared", "convId": "forAnn"},
    ]
    assert shared["bob"] == [{"text": "bob shared", "convId": "forBob"}]
    if sdk == "v5":
        assert obs["v1"] is None  # 5.0.0-rc.6 dropped pushOfflineMessages
    else:
        assert obs["v1"] == {
            "protocol": "lc.protobuf2.1",
            "olive": ["olive 1", "olive 2", "olive 3"],
            "pat": ["pat 1", "pat 2"],
        }


def check_temporary(temp: Obs | None, sdk: str) -> None:
    """5.x asks for unique temporary conversations and gets the same one back for the
    same members; 4.x asks for a new one each time; 3.x has none."""
    if sdk == "v3":
        assert temp is None
        return
    same = sdk == "v5"
    assert temp == {
        "sameForSecond": same,
        "sameForJerry": same,
        "temporaryIds": True,
        "expiresLater": True,
    }
