"""The payload of an offline push notification (features.md F47). Pure.

``payload_for`` applies the priority rule: the message's ``pushData`` (JSON; a plain
string becomes ``{"alert": string}``), else the configured ``push_template`` with
``${convId}``, ``${timestamp}`` (seconds) and ``${fromClientId}`` filled in; without
either there is nothing to send. The webhook that posts it is chatroom/http/push_webhook.py.
"""

from __future__ import annotations

import orjson

from chatroom.core.model import JSON


def payload_for(
    push_data: str | None, template: str, cid: str, sender: str, timestamp: int
) -> JSON:
    """The notification payload by the priority rule (pushData > template), or None."""
    if push_data:
        try:
            value: JSON = orjson.loads(push_data)
        except orjson.JSONDecodeError:
            return {"alert": push_data}
        return value if isinstance(value, dict) else {"alert": push_data}
    if not template:
        return None
    filled = (
        template.replace("${convId}", cid)
        .replace("${timestamp}", str(timestamp // 1000))
        .replace("${fromClientId}", sender)
    )
    try:
        value = orjson.loads(filled)
    except orjson.JSONDecodeError:
        return {"alert": filled}
    # The two internal keys of the cloud service never reach the device.
    if isinstance(value, dict):
        value.pop("_profile", None)
        value.pop("_apns_team_id", None)
    return value
