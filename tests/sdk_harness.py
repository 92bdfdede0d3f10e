"""The SDK tests' harness: a real server process per test and Node scenarios run
against it (see tests/sdk/test_sdk.py for how the tests use them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serve_process import terminate

ROOT = Path(__file__).resolve().parent.parent
SDK_DIR = ROOT / "tests" / "sdk"
SCENARIOS = SDK_DIR / "scenarios"
LISTENING = re.compile(r"chatroom listening on (wss?)://(\S+):(\d+) and https?://(\S+):(\d+)")
START_TIMEOUT = 20.0
SCENARIO_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# Clock slack between the server's timestamps and the scenario's Date.now() (same host).
SLACK_MS = 1000


Obs = dict[str, Any]

ENCODINGS = [
    pytest.param({"noBinary": True}, id="base64"),
    pytest.param({"noBinary": False}, id="binary"),
]
SUBPROTOCOLS = [
    pytest.param({"noBinary": True}, "lc.proto2base64.3", id="base64"),
    pytest.param({"noBinary": False}, "lc.protobuf2.3", id="binary"),
    pytest.param(
        {"noBinary": True, "pushOfflineMessages": True}, "lc.proto2base64.1", id="base64-v1"
    ),
    pytest.param(
        {"noBinary": False, "pushOfflineMessages": True}, "lc.protobuf2.1", id="binary-v1"
    ),
]


class Server:
    """One ``chatroom serve`` subprocess on its own SQLite file (or the database a
    ``postgresql://`` URL names)."""

    def __init__(self, db: Path | str, env: dict[str, str]) -> None:
        self.db = db
        self.env = env
        self.log: list[str] = []
        self._listening = threading.Event()
        self.ws_host = ""
        self.ws_port = 0
        self.http_host = ""
        self.http_port = 0
        self.scheme = "ws"  # wss once the server says it serves TLS
        # The CA that signed a TLS server's certificate: Node trusts it too
        # (NODE_EXTRA_CA_CERTS), like an app whose server has a private CA.
        self.ca_file: Path | None = None
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "chatroom", "serve", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--http-port", "0", "--db", str(self.db)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(
                    f"server did not start (exit {self.proc.returncode}):\n{self.log_tail()}"
                )

    def _read_log(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match and not self._listening.is_set():
                self.scheme, self.ws_host, ws_port, self.http_host, http_port = match.groups()
                self.ws_port, self.http_port = int(ws_port), int(http_port)
                self._listening.set()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log[-lines:])

    @property
    def ws_url(self) -> str:
        return f"{self.scheme}://{self.ws_host}:{self.ws_port}"

    def healthz(self) -> Obs:
        secure = self.scheme == "wss"  # both ports speak TLS, or neither
        url = f"http{'s' if secure else ''}://{self.http_host}:{self.http_port}/healthz"
        context = ssl.create_default_context(cafile=self.ca_file) if secure else None
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            assert response.status == 200
            body: Obs = json.loads(response.read())
        return body

    def run(
        self, scenario: str, params: Obs | None = None, timeout: float = SCENARIO_TIMEOUT
    ) -> Obs:
        """Run ``tests/sdk/scenarios/<scenario>.js`` and return its JSON observations."""
        node = shutil.which("node")
        assert node is not None, "node is required for the SDK tests"
        assert (SDK_DIR / "node_modules" / "leancloud-realtime").is_dir(), (
            "run `npm ci` in tests/sdk first (scripts/test does)"
        )
        env = self._node_env()
        argv = [node, str(SCENARIOS / f"{scenario}.js"), json.dumps(params or {})]
        try:
            done = subprocess.run(
                argv, cwd=SDK_DIR, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"{scenario} timed out after {timeout} s\n{exc.stderr!r}\n{self.log_tail()}"
            )
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0 or not lines:
            pytest.fail(
                f"{scenario} {params or ''} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-6000:]}\n"
                f"--- server log\n{self.log_tail()}"
            )
        result: Obs = json.loads(lines[-1])
        return result

    def run_until_ready(self, scenario: str) -> tuple[subprocess.Popen[str], Obs]:
        """Start a scenario that prints ``{"ready": true}`` first; return it and that line."""
        node = shutil.which("node")
        assert node is not None, "node is required for the SDK tests"
        env = self._node_env()
        proc = subprocess.Popen(
            [node, str(SCENARIOS / f"{scenario}.js"), "{}"],
            cwd=SDK_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the scenario's own deadline bounds this wait
        if not first.strip():
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"{scenario} never got ready\n{err[-4000:]}\n{self.log_tail()}")
        ready: Obs = json.loads(first)
        return proc, ready

    def _node_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "CHATROOM_WS": self.ws_url,
            "CHATROOM_HTTP": f"{self.http_host}:{self.http_port}",
        }
        if self.ca_file is not None:
            env["NODE_EXTRA_CA_CERTS"] = str(self.ca_file)
        return env

    def stop(self) -> int:
        """SIGTERM, then the exit status (killed and reported as -9 after STOP_TIMEOUT)."""
        assert self.proc is not None
        return terminate(self.proc, STOP_TIMEOUT)


class Cluster(Server):
    """Two ``chatroom serve`` nodes on one PostgreSQL database and one redis-server.
    This object is node A (its HTTP port answers the tests, its log comes first);
    ``peer`` is node B. Scenarios get both WebSocket URLs ($CHATROOM_WS, $CHATROOM_WS2)
    and spread their clients over them (tests/sdk/lib.js)."""

    def __init__(self, db: str, env: dict[str, str], redis_url: str) -> None:
        env = {**env, "CHATROOM_REDIS": redis_url}
        super().__init__(db, env)
        self.peer = Server(db, env)

    def start(self) -> None:
        self.peer.ca_file = self.ca_file
        super().start()
        self.peer.start()
        # Until each node has heard the other (a heartbeat a second): presence is shared.
        deadline = time.monotonic() + START_TIMEOUT
        while not all(node.healthz()["cluster"]["nodes"] == 1 for node in (self, self.peer)):
            if time.monotonic() > deadline:
                pytest.fail(f"the two nodes did not meet:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 60) -> str:
        return f"{super().log_tail(lines)}\n--- node B\n{self.peer.log_tail(lines)}"

    def _node_env(self) -> dict[str, str]:
        return {**super()._node_env(), "CHATROOM_WS2": self.peer.ws_url}

    def stop(self) -> int:
        """Both nodes; the first status that is not 0 (else 0)."""
        first = super().stop()
        second = self.peer.stop()
        return first or second


StartServer = Callable[..., Server]


# ---------------------------------------------------------------------------
# helpers


def error_code(reply: Obs) -> int | None:
    """The code of a failure reply in any of its documented forms (protocol.md 4.1, 4.16)."""
    if reply.get("cmd") == "error":
        body = reply.get("errorMessage", reply)
        return int(body["code"]) if "code" in body else None
    if reply.get("cmd") == "session" and reply.get("op") == "closed":
        code = reply.get("sessionMessage", {}).get("code")
        return int(code) if code is not None else None
    if reply.get("cmd") == "ack":
        code = reply.get("ackMessage", {}).get("code")
        return int(code) if code is not None else None
    return None


def texts(messages: list[Obs]) -> list[str]:
    return [m["text"] for m in messages]


def assert_recent(timestamp: int, before: int, after: int) -> None:
    assert isinstance(timestamp, int), timestamp
    assert before - SLACK_MS <= timestamp <= after + SLACK_MS, (timestamp, before, after)
