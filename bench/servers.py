"""Starting and stopping the servers under test, each pinned to core 0.

chatroom itself (one or more commits of it), and the peers of ``shared/peers``
(bench.md): the Node and Bun peers run from a copy of that directory under
``bench/.peers`` where ``npm ci`` installs their modules (Bun's binary comes with the
npm package ``bun``), since ``shared/`` may be read-only; the Python peers run from
the peers' directory with this interpreter (picows comes with the ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
import importlib.util
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
from bench.procstat import pin_and_schedule

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
    kind: str  # "chatroom", "node", "bun" or "python"
    mode: Mode
    script: str = ""
    env: tuple[tuple[str, str], ...] = ()
    default: bool = True  # run unless --server picks others
    module: str = ""  # a Python peer's library, checked before the run
    chatroom_dir: Path | None = None  # chatroom: the snapshot it runs from (None: work tree)

    @property
    def is_chatroom(self) -> bool:
        return self.kind == "chatroom"


SERVERS = [
    ServerSpec("chatroom", "chatroom", "lc"),
    # the same with a 5 ms write delay: frames of busy rooms share system calls
    ServerSpec(
        "chatroom_wd5", "chatroom", "lc", env=(("CHATROOM_WRITE_DELAY", "0.005"),), default=False
    ),
    ServerSpec("bun_ws", "bun", "raw", "bun_ws.js"),
    ServerSpec("node_ws", "node", "raw", "node_ws.js"),
    ServerSpec("node_ws_prepared", "node", "raw", "node_ws_prepared.js"),
    ServerSpec("node_socketio", "node", "sio", "node_socketio.js"),
    ServerSpec("picows_ws", "python", "raw", "picows_ws.py", module="picows"),
    ServerSpec("py_websockets", "python", "raw", "py_websockets.py", module="websockets"),
    ServerSpec("trio_naive", "python", "raw", "trio_naive.py", module="trio_websocket"),
]
BY_NAME = {s.name: s for s in SERVERS}
# every chatroom figure is also given as a ratio to these two, when they ran (issue 15)
REFERENCE_PEERS = ("bun_ws", "node_ws")


def ref_label(ref: str, sha: str) -> str:
    """How a ``--chatroom-ref`` is named in tables: a symbolic ref as given (``HEAD``,
    ``main~1``, ``worktree``), a commit by its first 7 hex digits."""
    if re.fullmatch(r"[0-9a-fA-F]{7,40}", ref):
        return sha[:7] if sha else ref[:7]
    return ref


def for_refs(specs: list[ServerSpec], refs: list[tuple[str, Path | None]]) -> list[ServerSpec]:
    """The servers to run, with each chatroom variant once per measured commit: one
    ref keeps the plain name (``chatroom``), several are named ``chatroom@LABEL``,
    in the order given (the first is the baseline of the ratios between them)."""
    out: list[ServerSpec] = []
    for spec in specs:
        if not spec.is_chatroom:
            out.append(spec)
            continue
        for label, where in refs:
            name = spec.name if len(refs) == 1 else f"{spec.name}@{label}"
            out.append(dataclasses.replace(spec, name=name, chatroom_dir=where))
    return out


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
    """``$CHATROOM_PEERS``, else ``shared/peers`` beside the clone; for a git worktree,
    beside its main clone (a worktree may live elsewhere)."""
    if "CHATROOM_PEERS" in os.environ:
        return Path(os.environ["CHATROOM_PEERS"])
    beside = REPO.parent / "shared" / "peers"
    if beside.is_dir():
        return beside
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    main_clone = Path(common).parent if common else REPO
    return main_clone.parent / "shared" / "peers"


def _copy_peers(dest: Path, log: list[str]) -> bool:
    """Copy the peers' files (not their modules) to ``dest`` and ``npm ci`` there when
    the lock file changed since the last install."""
    src = peers_source()
    if not (src / "package-lock.json").exists():
        log.append(f"Node and Bun peers skipped: no peers at {src}")
        return False
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file():
            shutil.copy2(item, dest / item.name)
    lock = (src / "package-lock.json").read_bytes()
    stamp = dest / "node_modules" / ".bench-lock"
    if stamp.exists() and stamp.read_bytes() == lock:
        return True
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=dest,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        log.append(f"Node and Bun peers skipped: npm ci failed: {done.stderr.strip()[-300:]}")
        return False
    stamp.write_bytes(lock)
    return True


def bun_binary(peers_dir: Path) -> Path:
    return peers_dir / "node_modules" / ".bin" / "bun"


def _bun_runs(peers_dir: Path, log: list[str]) -> bool:
    """The npm package ships Bun's binary through an optional platform dependency:
    check that the one installed really runs on this machine."""
    try:
        done = subprocess.run(
            [str(bun_binary(peers_dir)), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"bun_ws skipped: bun does not run: {exc}")
        return False
    if done.returncode != 0:
        log.append(f"bun_ws skipped: bun --version failed: {done.stderr.strip()[-300:]}")
        return False
    log.append(f"bun_ws: Bun {done.stdout.strip()}")
    return True


def _python_peer_ready(spec: ServerSpec, log: list[str]) -> bool:
    if not (peers_source() / spec.script).exists():
        log.append(f"{spec.name} skipped: no {spec.script} in {peers_source()}")
        return False
    if spec.module and importlib.util.find_spec(spec.module) is None:
        log.append(f"{spec.name} skipped: {spec.module} not installed (pip install -e '.[bench]')")
        return False
    return True


def prepare_peers(dest: Path, specs: list[ServerSpec], log: list[str]) -> list[ServerSpec]:
    """The servers of ``specs`` that can run here, after installing the Node and Bun
    peers in ``dest``; a note in ``log`` for each one left out, and why."""
    js = [s for s in specs if s.kind in ("node", "bun")]
    js_ok = False
    if js and not (shutil.which("node") and shutil.which("npm")):
        log.append("Node and Bun peers skipped: node/npm not installed")
    elif js:
        js_ok = _copy_peers(dest, log)
    bun_ok = js_ok and any(s.kind == "bun" for s in js) and _bun_runs(dest, log)
    ready = {"chatroom": True, "node": js_ok, "bun": bun_ok}
    return [
        s for s in specs if (_python_peer_ready(s, log) if s.kind == "python" else ready[s.kind])
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin_to_server_core() -> None:
    pin_and_schedule(SERVER_CORE)


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


def _command(spec: ServerSpec, port: int, peers_dir: Path, db: str) -> tuple[list[str], Path]:
    if spec.is_chatroom:
        args = [*_CHATROOM_ARGS, "--db", db]
        if spec.chatroom_dir is None:
            return [sys.executable, "-m", "chatroom", *args], REPO
        return [sys.executable, "-c", _ISOLATED_CHATROOM, *args], spec.chatroom_dir
    if spec.kind == "node":
        return ["node", spec.script, str(port)], peers_dir
    if spec.kind == "bun":
        return [str(bun_binary(peers_dir)), spec.script, str(port)], peers_dir
    return [sys.executable, str(peers_source() / spec.script), str(port)], peers_source()


def start(
    spec: ServerSpec,
    peers_dir: Path,
    log_dir: Path,
    env: dict[str, str],
    db: str = ":memory:",
) -> Running:
    """Start a server on core 0 and wait until it accepts connections; chatroom runs
    from its spec's ``chatroom_dir`` (a snapshot of a commit, or the work tree) on
    database ``db``."""
    port = _free_port()
    argv, cwd = _command(spec, port, peers_dir, db)
    log_path = log_dir / f"{spec.name.replace('/', '_')}-{int(time.time() * 1000)}.log"
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
