"""The official SDK over ``wss://``: a server started with ``--tls-cert/--tls-key``
(CHATROOM_TLS_CERT/KEY here) and a certificate from a CA the test makes with
``trustme``, which Node is told to trust (NODE_EXTRA_CA_CERTS), as an app with a
private CA would. The scenario is the plain ``msg_text`` one: nothing in it knows of
TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from sdk_harness import ENCODINGS, Obs, StartServer

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("params", ENCODINGS)
def test_the_sdk_chats_over_wss(start_server: StartServer, tmp_path: Path, params: Obs) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    server = start_server(tls_cert=str(cert), tls_key=str(key))
    assert server.ws_url.startswith("wss://")
    assert any("https://" in line for line in server.log)
    server.ca_file = ca_file
    obs = server.run("msg_text", params)
    assert obs["sent"]["status"] == "sent"
    assert [m["text"] for m in obs["received"]] == ["hello 你好 👋"]
    assert [m["text"] for m in obs["history"]] == ["hello 你好 👋"]
