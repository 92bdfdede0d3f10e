"""Conversation management driven by the official JS SDK (``leancloud-realtime@4.3.1``):
attributes set with ``set('attr.x')``/``save()`` and read back, every ConversationQuery
operator, sort/limit/skip/compact/withLastMessagesRefreshed, temporary conversations
expiring with 4323, system conversations made by the operator (subscribe, broadcast,
read-only), and the SDK's signature factories against a signing server (protocol.md
4.5-4.10, 6.9; features.md F08, F19-F25, F29, F30). Scenarios are
``tests/sdk/scenarios/conv_*.js``; the fixtures are in ``tests/sdk/conftest.py``.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from sdk_harness import ENCODINGS, Obs, Server, StartServer

pytestmark = pytest.mark.timeout(120)

MASTER = "sdk-master-key"


@pytest.mark.parametrize("params", ENCODINGS)
def test_attributes_and_queries(server: Server, params: Obs) -> None:
    obs = server.run("conv_attrs_query", params)
    g, h, k = obs["g"], obs["h"], obs["k"]
    change = {"attr.color": "red", "name": "Cartoon 2", "topic": "Dogs"}
    assert obs["updates"] == [{"cid": g, "attributes": change, "updatedBy": "tom"}]
    fetched = {"name": "Cartoon 2", "attr": {"color": "red"}, "topic": "Dogs", "level": 2}
    assert obs["fetched"] == fetched
    assert obs["local"] == {"attr": {"color": "red"}, "name": "Cartoon 2"}
    found = obs["found"]
    assert found["attrColor"] == [g]
    assert found["name"] == [h]
    assert found["notEqual"] == [g, k]
    assert found["greater"] == [h, k]
    assert found["lessOrEqual"] == [h, g]
    assert found["containedIn"] == [g, k]
    assert found["notContainsIn"] == [h]
    assert found["containsAll"] == [h]
    assert found["size"] == [h]
    assert found["exists"] == [h]
    assert found["doesNotExist"] == [g, k]
    assert found["startsWith"] == [h]
    assert found["contains"] == [g]
    assert found["endsWith"] == [k]
    assert found["matchesI"] == [h]
    assert found["notContains"] == [g, h]
    assert found["containsMembers"] == [h, k]
    assert found["withMembers"] == [g]
    assert found["chained"] == [h]
    assert found["defaultOrder"][0] == h  # the most recently active first
    assert sorted(found["defaultOrder"]) == sorted([g, h, k])
    assert found["sorted"] == [g, k, h]  # topic: "Dogs", then the missing ones by -level
    assert found["paged"] == [h]
    assert found["lmExists"] == [h]
    assert found["lmRange"] == [h]
    assert found["createdAt"] == [g, h, k]
    assert obs["compactMembers"] == []
    assert obs["lastMessage"] == "latest"
    assert isinstance(obs["lastMessageAt"], int)
    temp = obs["temp"]
    assert temp["id"].startswith("_tmp:")
    assert temp["found"] == [temp["id"]]
    assert temp["send"]["error"]["code"] == 4323
    assert temp["count"]["error"]["code"] == 4323


def _admin_create(server: Server, name: str) -> str:
    request = urllib.request.Request(
        f"http://{server.http_host}:{server.http_port}/admin/system-conversations",
        json.dumps({"name": name}).encode(),
        {"Content-Type": "application/json", "X-LC-Key": f"{MASTER},master"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
        cid: str = json.loads(response.read())["objectId"]
    return cid


@pytest.mark.parametrize("params", ENCODINGS)
def test_system_conversation(start_server: StartServer, params: Obs) -> None:
    server = start_server(master_key=MASTER)
    cid = _admin_create(server, "News")
    obs = server.run("conv_system", {**params, "cid": cid, "key": MASTER})
    found = obs["found"]
    assert found == {"id": cid, "cls": "ServiceConversation", "system": True, "name": "News"}
    assert obs["subscribed"] is True
    assert obs["message"] == {
        "text": "news!",
        "from": "system",
        "id": obs["posted"]["id"],
        "cid": cid,
    }
    # A subscriber writes to the operator (seed 002): stored in its thread, readable
    # over REST, pushed to no other subscriber.
    assert obs["send"]["resolved"] is True
    assert obs["thread"] == [
        ["tom", obs["send"]["id"], "reply"],
        ["system", obs["posted"]["id"], "news!"],
    ]
    assert obs["seenByJerry"] == []
    assert obs["update"]["error"]["code"] == 4308
    assert obs["unsubscribed"] is True
    # The operator's kick reaches the SDK as its close event, 4115 with the reason.
    assert obs["kick"] == 200
    assert obs["close"] == {"code": 4115, "reason": "bye"}


def test_signature_factories(start_server: StartServer) -> None:
    server = start_server(master_key=MASTER, signatures="login,conversation", app_id="test-app")
    obs = server.run("conv_signatures", {"key": MASTER})
    assert obs["members"] == ["jerry", "spike", "tom"]  # spike joined last
    assert (obs["added"], obs["removed"], obs["joined"]) == (True, True, True)
    assert obs["badLogin"]["error"]["code"] == 4102
    assert obs["badCreate"]["error"]["code"] == 4302
    assert obs["unsigned"]["error"]["code"] == 4102


@pytest.mark.parametrize("params", ENCODINGS)
def test_missed_events_after_reconnect(server: Server, params: Obs) -> None:
    obs = server.run("conv_replay", params)
    cid, other = obs["cid"], obs["other"]
    joined = [j for j in obs["joined"] if j["cid"] == cid]
    assert joined == [{"cid": cid, "members": ["spike"], "by": "tom"}]
    assert obs["updated"] == [{"cid": cid, "attributes": {"name": "after"}, "by": "tom"}]
    assert {"cid": other, "by": "tom"} in obs["invited"]
    assert obs["members"] == ["jerry", "spike", "tom"]
    assert obs["name"] == "after"
