"""The REST API against its own ``/openapi.json``: schemathesis (its CLI) fuzzes every
operation of a live ``chatroom serve`` process, with the master key and with real
conversation ids, and fails on any 5xx (``not_a_server_error``), any status the document
does not list or any reply that is not JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sdk_harness import Server

pytestmark = pytest.mark.timeout(400)

MASTER = "schema-master"
_CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"


def _create(server: Server, family: str, body: object) -> str:
    request = urllib.request.Request(
        f"http://{server.http_host}:{server.http_port}/1.2/rtm/{family}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "X-LC-Key": f"{MASTER},master"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
        cid: str = json.loads(response.read())["objectId"]
    return cid


def test_every_operation_fuzzed_gets_a_documented_answer_never_a_5xx(tmp_path: Path) -> None:
    server = Server(tmp_path / "chat.db", {**os.environ, "CHATROOM_MASTER_KEY": MASTER})
    server.start()
    try:
        ids = {
            "/conversations/": _create(server, "conversations", {"m": ["a", "b"], "name": "n"}),
            "/chatrooms/": _create(server, "chatrooms", {"name": "room"}),
            "/service-conversations/": _create(server, "service-conversations", {"name": "s"}),
        }
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            "".join(
                f'[[operations]]\ninclude-path-regex = "{path}"\n'
                f'parameters = {{ "path.cid" = "{cid}" }}\n\n'
                for path, cid in ids.items()
            )
        )
        cli = Path(sys.executable).parent / "schemathesis"
        url = f"http://{server.http_host}:{server.http_port}/openapi.json"
        args = ["--config-file", str(config), "run", url, "-c", _CHECKS, "--seed", "7"]
        args += ["-H", f"X-LC-Key: {MASTER},master", "-n", "25"]
        args += ["--phases", "examples,coverage,fuzzing"]
        done = subprocess.run(
            [str(cli), *args],
            capture_output=True,
            text=True,
            timeout=350,
            env={**os.environ, "NO_COLOR": "1"},
            cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
        )
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        with urllib.request.urlopen(url, timeout=5) as response:
            operations = sum(len(methods) for methods in json.load(response)["paths"].values())
        tested = re.search(r"Tested: (\d+)", done.stdout)
        assert tested is not None, done.stdout[-3000:]
        assert int(tested.group(1)) == operations, done.stdout[-3000:]
    finally:
        assert server.stop() == 0, server.log_tail()
