"""TLS on both ports (chatroom/net/tls.py): wss:// for chatroom.client, https:// for the
HTTP port, a client that does not speak TLS refused alone, and certificates reloaded
in place, all with certificates made by ``trustme``."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme
from client_support import FAST, next_message
from helpers import Running, fail_after, running_server
from sdk_harness import Server as ProcessServer

from chatroom.cli.main import main
from chatroom.client import Options, connect
from chatroom.net.tls import Certificates


@dataclass
class Files:
    cert: Path
    key: Path

    def write(self, ca: trustme.CA) -> None:
        issued = ca.issue_cert("127.0.0.1", "localhost")
        self.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        self.key.write_bytes(issued.private_key_pem.bytes())


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path / "cert.pem", tmp_path / "key.pem")


@asynccontextmanager
async def tls_server(files: Files, **overrides: object) -> AsyncIterator[Running]:
    settings = {"tls_cert": str(files.cert), "tls_key": str(files.key), **overrides}
    async with running_server(settings) as running:
        yield running


async def handshake(port: int, context: ssl.SSLContext) -> bool:
    """Whether a TLS handshake with ``port`` succeeds, the server verified by ``context``."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError:
        return False
    finally:
        await trio.aclose_forcefully(stream)
    return True


async def https_get(port: int, path: str, context: ssl.SSLContext) -> bytes:
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=context, https_compatible=True
    )
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        raw = b""
        while chunk := await stream.receive_some():
            raw += chunk
    return raw


def secure(running: Running) -> str:
    return f"wss://127.0.0.1:{running.ws_port}/"


@fail_after(30)
async def test_clients_chat_over_wss_and_the_http_port_speaks_https(files: Files) -> None:
    ca = trustme.CA()
    files.write(ca)
    options = Options(**{**FAST.__dict__, "ssl_context": trusting(ca)})
    async with (
        tls_server(files) as running,
        connect(secure(running), "Tom", options) as tom,
        connect(secure(running), "Jerry", options) as jerry,
    ):
        cid = await tom.create_conversation(["Jerry"])
        sent = await tom.send(cid, "over TLS")
        got = await next_message(jerry)
        assert (got.mid, got.text) == (sent.mid, "over TLS")
        response = await https_get(running.http_port, "/healthz", trusting(ca))
        assert response.startswith(b"HTTP/1.1 200")
        assert b'"status":"ok"' in response


@fail_after(30)
async def test_a_client_without_tls_is_refused_and_nobody_else_notices(files: Files) -> None:
    ca = trustme.CA()
    files.write(ca)
    options = Options(**{**FAST.__dict__, "ssl_context": trusting(ca)})
    async with (
        tls_server(files) as running,
        connect(secure(running), "Tom", options) as tom,
        connect(secure(running), "Jerry", options) as jerry,
    ):
        cid = await tom.create_conversation(["Jerry"])
        plain = await trio.open_tcp_stream("127.0.0.1", running.ws_port)
        async with plain:
            await plain.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
            answer = b""
            try:
                while chunk := await plain.receive_some():
                    answer += chunk
            except trio.BrokenResourceError:
                pass  # a reset is a refusal too
        assert b"HTTP" not in answer  # nothing was served in the clear
        assert running.server.tls is not None
        assert running.server.tls.handshakes_failed == 1
        await tom.send(cid, "still here")
        assert (await next_message(jerry)).text == "still here"


@fail_after(30)
async def test_a_renewed_certificate_serves_new_connections_and_spares_open_ones(
    files: Files,
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    files.write(old_ca)
    options = Options(**{**FAST.__dict__, "ssl_context": trusting(old_ca)})
    async with (
        tls_server(files, tls_check_interval=0) as running,
        connect(secure(running), "Tom", options) as tom,
        connect(secure(running), "Jerry", options) as jerry,
    ):
        tls = running.server.tls
        assert tls is not None
        cid = await tom.create_conversation(["Jerry"])
        files.write(new_ca)
        assert tls.reload()  # what SIGHUP does
        for port in (running.ws_port, running.http_port):
            assert await handshake(port, trusting(new_ca))
            assert not await handshake(port, trusting(old_ca))
        await tom.send(cid, "same connection")  # established before the reload
        assert (await next_message(jerry)).text == "same connection"


@fail_after(30)
async def test_a_broken_renewal_keeps_the_old_certificate(files: Files) -> None:
    ca = trustme.CA()
    files.write(ca)
    async with tls_server(files, tls_check_interval=0) as running:
        tls = running.server.tls
        assert tls is not None
        other = Files(files.cert.with_name("other.pem"), files.key.with_name("other.key"))
        other.write(trustme.CA())
        files.key.write_bytes(other.key.read_bytes())  # a key that does not match
        assert not tls.reload()
        assert await handshake(running.ws_port, trusting(ca))


@fail_after(30)
async def test_changed_files_are_noticed_without_a_signal(files: Files) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    files.write(old_ca)
    async with tls_server(files, tls_check_interval=0.05) as running:
        tls = running.server.tls
        assert tls is not None
        files.write(new_ca)
        while tls.reloads == 0:  # noqa: ASYNC110 (the watcher polls the files)
            await trio.sleep(0.02)
        assert await handshake(running.ws_port, trusting(new_ca))


def test_missing_or_mismatched_files_fail_clearly(files: Files, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls_cert/tls_key"):
        Certificates(str(tmp_path / "none.pem"), str(tmp_path / "none.key"))
    files.write(trustme.CA())
    other = Files(tmp_path / "o.pem", tmp_path / "o.key")
    other.write(trustme.CA())
    with pytest.raises(ValueError, match="tls_cert/tls_key"):
        Certificates(str(files.cert), str(other.key))


def test_serve_refuses_bad_tls_settings_before_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none.pem")
    assert main(["serve", "--db", ":memory:", "--tls-cert", missing, "--tls-key", missing]) == 2
    assert "tls_cert/tls_key" in capsys.readouterr().err
    assert main(["serve", "--db", ":memory:", "--tls-cert", missing]) == 2
    assert "give both or neither" in capsys.readouterr().err


def verifies(port: int, ca: trustme.CA) -> bool:
    """Whether the certificate served on ``port`` is signed by ``ca`` (blocking)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with trusting(ca).wrap_socket(raw, server_hostname="127.0.0.1"):
                return True
        except ssl.SSLCertVerificationError:
            return False


def test_sighup_reloads_the_certificate_of_chatroom_serve(files: Files, tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    files.write(old_ca)
    env = {**os.environ, "CHATROOM_TLS_CERT": str(files.cert), "CHATROOM_TLS_KEY": str(files.key)}
    server = ProcessServer(tmp_path / "chat.db", {**env, "CHATROOM_TLS_CHECK_INTERVAL": "0"})
    server.start()
    try:
        assert server.ws_url.startswith("wss://")
        assert verifies(server.ws_port, old_ca)
        files.write(new_ca)
        assert verifies(server.ws_port, old_ca)  # no check interval: only the signal
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("TLS certificate reloaded" in line for line in server.log):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.02)
        assert verifies(server.ws_port, new_ca)
        assert verifies(server.http_port, new_ca)
    finally:
        assert server.stop() == 0  # SIGHUP did not end it; SIGTERM does, cleanly
