"""Starting and stopping the servers under test, each pinned to core 0.

chatroom itself, and the peers of ``shared/peers`` (bench.md): Node peers run from a
copy of that directory under ``bench/.peers`` where ``npm ci`` installs their
modules, since ``shared/`` may be read-only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.generator import Mode
from bench.procstat import pin_and_boost

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER_CORE = 0
READY_TIMEOUT = 30.0
_CHATROOM_READY = re.compile(r"chatroom listening on ws://(\S+):(\d+) and http://(\S+):(\d+)")


class ServerUnavailable(RuntimeError):
    """The server cannot be run here (not installed, does not start): a note, not a crash."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    kind: str  # "chatroom", "node" or "python"
    mode: Mode
    script: str = ""
    env: tuple[tuple[str, str], ...] = ()
    default: bool = True  # run unless --server picks others

    @property
    def is_chatroom(self) -> bool:
        return self.kind == "chatroom"


SERVERS = [
    ServerSpec("chatroom", "chatroom", "lc"),
    # the same with a 5 ms write delay: frames of busy rooms share system calls
    ServerSpec(
        "chatroom_wd5", "chatroom", "lc", env=(("CHATROOM_WRITE_DELAY", "0.005"),), default=False
    ),
    ServerSpec("node_ws", "node", "raw", "node_ws.js"),
    ServerSpec("node_ws_prepared", "node", "raw", "node_ws_prepared.js"),
    ServerSpec("node_socketio", "node", "sio", "node_socketio.js"),
    ServerSpec("py_websockets", "python", "raw", "py_websockets.py"),
    ServerSpec("trio_naive", "python", "raw", "trio_naive.py"),
]
BY_NAME = {s.name: s for s in SERVERS}


def chatroom_snapshot(ref: str, dest_root: Path) -> tuple[Path, str]:
    """Export ``chatroom/`` as of a git commit into ``dest_root/chatroom-<sha>`` and
    return (that directory, the full sha). Others edit the work tree while the
    benchmark runs: measuring a commit keeps every run on the same code."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = dest_root / f"chatroom-{sha[:12]}"
    if not (dest / "chatroom" / "__main__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "chatroom"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha


def peers_source() -> Path:
    return Path(os.environ.get("CHATROOM_PEERS", REPO.parent / "shared" / "peers"))


def prepare_node_peers(dest: Path, log: list[str]) -> bool:
    """Copy the peers to ``dest`` and ``npm ci`` there once; False (with a note) when
    node or npm is missing or the install fails."""
    if not shutil.which("node") or not shutil.which("npm"):
        log.append("Node peers skipped: node/npm not installed")
        return False
    if (dest / "node_modules" / "ws").is_dir() and (dest / "node_modules" / "socket.io").is_dir():
        return True
    src = peers_source()
    if not (src / "package-lock.json").exists():
        log.append(f"Node peers skipped: no peers at {src}")
        return False
    shutil.copytree(src, dest, dirs_exist_ok=True)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=dest, capture_output=True, text=True
    )
    if done.returncode != 0:
        log.append(f"Node peers skipped: npm ci failed: {done.stderr.strip()[-300:]}")
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin_to_server_core() -> None:
    pin_and_boost(SERVER_CORE)


@dataclass
class Running:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# Runs `python -m chatroom` from a snapshot directory with the editable install's
# import hooks removed: otherwise a module missing from the snapshot would silently be
# imported from the work tree.
_ISOLATED_CHATROOM = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in repr(h)]
sys.path_importer_cache.clear()
sys.path.insert(0, ".")
sys.argv[0] = "chatroom"
runpy.run_module("chatroom", run_name="__main__", alter_sys=True)
"""
_CHATROOM_ARGS = ["serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0"]


def _command(
    spec: ServerSpec, port: int, peers_dir: Path, chatroom_dir: Path, db: str
) -> tuple[list[str], Path]:
    if spec.is_chatroom:
        args = [*_CHATROOM_ARGS, "--db", db]
        if chatroom_dir == REPO:
            return [sys.executable, "-m", "chatroom", *args], REPO
        return [sys.executable, "-c", _ISOLATED_CHATROOM, *args], chatroom_dir
    if spec.kind == "node":
        return ["node", spec.script, str(port)], peers_dir
    return [sys.executable, str(peers_source() / spec.script), str(port)], peers_source()


def start(
    spec: ServerSpec,
    peers_dir: Path,
    log_dir: Path,
    env: dict[str, str],
    chatroom_dir: Path = REPO,
    db: str = ":memory:",
) -> Running:
    """Start a server on core 0 and wait until it accepts connections; chatroom runs
    from ``chatroom_dir`` (the work tree, or a snapshot of a commit) on database ``db``."""
    port = _free_port()
    argv, cwd = _command(spec, port, peers_dir, chatroom_dir, db)
    log_path = log_dir / f"{spec.name}-{int(time.time() * 1000)}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env, "PORT": str(port)},
            preexec_fn=_pin_to_server_core,
        )
    running = Running(spec, proc, port, log_path)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not running.alive():
            last = " | ".join(running.log_tail(3000).strip().splitlines()[-3:])
            raise ServerUnavailable(f"{spec.name} exited with code {proc.returncode}: {last}")
        if spec.is_chatroom:
            m = _CHATROOM_READY.search(running.log_tail(20000))
            if m:
                running.port = int(m.group(2))
                return running
        elif _accepts(port):
            return running
        time.sleep(0.1)
    running.stop()
    raise ServerUnavailable(f"{spec.name} not ready after {READY_TIMEOUT:.0f} s")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
