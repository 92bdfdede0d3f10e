"""The official SDK over TLS: a server started with ``--tls-cert/--tls-key``
(CHATROOM_TLS_CERT/KEY here) and a certificate from a CA the test makes with
``trustme``, which Node is told to trust (NODE_EXTRA_CA_CERTS), as an app with a
private CA would. ``msg_text`` chats over ``wss://`` and knows nothing of TLS;
``mod_member_info`` reaches the HTTP port over ``https://``, the only scheme the SDK
uses for its own REST calls (member info, issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from sdk_harness import ENCODINGS, Obs, Server, StartServer

pytestmark = pytest.mark.timeout(120)


def tls_server(start_server: StartServer, folder: Path) -> Server:
    """A server whose both ports speak TLS with a certificate Node trusts."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return start_server(tls_cert=str(cert), tls_key=str(key), ca_file=ca_file)


@pytest.mark.parametrize("params", ENCODINGS)
def test_the_sdk_chats_over_wss(start_server: StartServer, tmp_path: Path, params: Obs) -> None:
    server = tls_server(start_server, tmp_path)
    assert server.ws_url.startswith("wss://")
    assert any("https://" in line for line in server.log)
    obs = server.run("msg_text", params)
    assert obs["sent"]["status"] == "sent"
    assert [m["text"] for m in obs["received"]] == ["hello 你好 👋"]
    assert [m["text"] for m in obs["history"]] == ["hello 你好 👋"]


def test_the_sdk_reads_member_info_over_https(start_server: StartServer, tmp_path: Path) -> None:
    server = tls_server(start_server, tmp_path)
    obs = server.run("mod_member_info", {})

    def info(member: str, role: str, owner: bool = False) -> Obs:
        return {"conversationId": obs["cid"], "memberId": member, "role": role, "isOwner": owner}

    assert obs["all"] == [
        info("member", "Manager"),
        info("other", "Member"),
        info("owner", "Owner", owner=True),
    ]
    assert obs["one"] == info("member", "Manager")
    assert obs["after"] == [
        info("member", "Member"),
        info("other", "Member"),
        info("owner", "Owner", owner=True),
    ]
    assert obs["refused"] == {"code": 4317}  # a non-member reads no roles (403)
