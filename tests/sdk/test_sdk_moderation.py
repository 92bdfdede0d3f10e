"""Moderation driven by the official JS SDK (``leancloud-realtime@4.3.1``), after its own
"Conversation Management" tests: roles (updateMemberRole; Owner refused with 5130), the
owner who can neither quit nor be removed, muteMembers/unmuteMembers/queryMutedMembers
with MUTED/MEMBERS_MUTED/MEMBERS_UNMUTED (also in a chatroom), and
blockMembers/unblockMembers/queryBlockedMembers with BLOCKED, KICKED, MEMBERS_BLOCKED,
MEMBERS_LEFT and MEMBERS_UNBLOCKED, in both encodings. The scenario is
``tests/sdk/scenarios/mod_manage.js``.
"""

from __future__ import annotations

import pytest
from sdk_harness import ENCODINGS, Obs, Server, StartServer

pytestmark = pytest.mark.timeout(120)

UNAUTHORIZED = "CONVERSATION_OPERATION_UNAUTHORIZED"
NEED_OWNER = "CONVERSATION_NEED_OWNER"


def refused(result: Obs) -> tuple[object, object]:
    assert not result["resolved"], result
    return result["error"]["code"], result["error"]["message"]


@pytest.mark.parametrize("params", ENCODINGS)
def test_moderation_through_the_sdk(server: Server, params: Obs) -> None:
    obs = server.run("mod_manage", params)
    roles = obs["roles"]
    assert refused(roles["selfPromotion"]) == (4308, UNAUTHORIZED)
    assert refused(roles["ownerPromotion"])[0] == 5130
    assert refused(roles["quit"]) == (4308, NEED_OWNER)
    assert roles["promoted"] is True
    assert obs["partial"] == {
        "ok": ["other"],
        "failed": [{"code": 4308, "message": NEED_OWNER, "ids": ["owner"]}],
    }
    mute = obs["mute"]
    assert mute["muted"] == {"ok": ["member"], "failed": []}
    assert mute["membersMuted"] == {"members": ["member"], "mutedBy": "owner"}
    assert mute["mutedPayload"] == {"mutedBy": "owner"}
    assert mute["query"] == {"results": ["member"], "next": None}
    assert refused(mute["send"]) == (4308, "CONVERSATION_MEMBER_SHUTUP")
    assert refused(mute["selfUnmute"]) == (4308, UNAUTHORIZED)
    assert mute["membersUnmuted"] == {"members": ["member"], "unmutedBy": "owner"}
    assert mute["sendAfter"] is True
    block = obs["block"]
    assert block["blocked"] == {"ok": ["member"], "failed": []}
    assert block["membersBlocked"] == {"members": ["member"], "blockedBy": "owner"}
    assert block["blockedPayload"] == {"blockedBy": "owner"}
    assert block["kicked"] == {"kickedBy": "owner"}
    assert block["membersLeft"] == {"members": ["member"], "kickedBy": "owner"}
    assert block["query"] == {"results": ["member"], "next": None}
    assert refused(block["rejoin"]) == (4315, "CONVERSATION_BLACKLISTED")
    assert refused(block["selfUnblock"])[0] == 4317  # no member any more
    assert block["membersUnblocked"] == {"members": ["member"], "unblockedBy": "owner"}
    assert block["rejoinAfter"] is True
    assert block["members"] == ["member", "owner"]
    room = obs["chatroom"]
    assert room["muted"] == {"ok": ["member"], "failed": []}
    assert refused(room["send"]) == (4308, "CONVERSATION_MEMBER_SHUTUP")
    assert room["kick"] == {
        "ok": [],
        "failed": [{"code": 4308, "message": UNAUTHORIZED, "ids": ["owner"]}],
    }


def test_blacklist_signatures(start_server: StartServer) -> None:
    """``signatures = "blacklist"``: the SDK's blacklistSignatureFactory signs
    blockMembers/unblockMembers; a wrong or missing signature is 4546 and blocks no one."""
    server = start_server(master_key="sig-master", signatures="blacklist", app_id="test-app")
    obs = server.run("mod_block_signature", {"key": "sig-master"})
    assert (obs["blocked"], obs["unblocked"]) == (True, True)
    assert obs["query"] == ["spike"]
    assert obs["badBlock"]["error"]["code"] == 4546
    assert obs["unsigned"]["error"]["code"] == 4546
    assert obs["stillThere"] == ["bob", "spike"]
