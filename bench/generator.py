"""The Python side of the load generator: builds gen.c, writes plans, runs commands.

gen.c does all socket work on core 1; this module only feeds it precomputed bytes
(handshakes, setup frames, publish templates) and reads back one JSON object per
command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from bench.procstat import cpu_seconds, pin_and_schedule

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "gen.c"
GENERATOR_CORE = 1

Mode = Literal["raw", "sio", "lc"]
Json = dict[str, object]

# Roles understood by gen.c
VIEWER, PUBLISHER, IDLE, SLOW = 0, 1, 2, 3


class GeneratorError(RuntimeError):
    pass


def build(out_dir: Path) -> Path:
    """Compile gen.c with ``gcc -O2`` unless the binary is newer than the source."""
    binary = out_dir / "gen"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise GeneratorError("no C compiler (gcc) found: the load generator is C")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def handshake(path: str = "/", subprotocol: str | None = None) -> bytes:
    extra = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


@dataclass
class Conn:
    """One connection to open: its role and the setup frames, each with the ``i`` of
    the reply to await before sending the next (lc mode)."""

    role: int
    setup: list[tuple[bytes, int]] = field(default_factory=list)


@dataclass
class Plan:
    """Connections to open. gen.c opens ``batch`` of them, then waits until they are
    set up (or ``deadline`` seconds) before opening more; ``batch=0`` opens them all
    at once (a flash crowd) and waits ``deadline`` seconds in all."""

    mode: Mode
    handshake: bytes
    conns: list[Conn]
    batch: int = 100
    deadline: float = 30.0
    port: int = 0  # the server port they connect to (0: the generator's)

    def write(self, path: Path) -> None:
        with path.open("w") as f:
            f.write(f"mode {self.mode}\nhandshake {self.handshake.hex()}\n")
            f.write(f"batch {self.batch}\ndeadline {self.deadline}\n")
            if self.port:
                f.write(f"port {self.port}\n")
            for c in self.conns:
                frames = " ".join(f"{frame.hex()} {i}" for frame, i in c.setup)
                f.write(f"conn {c.role} {len(c.setup)} {frames}\n")


@dataclass
class Connected:
    """What a ``connect`` did: ``ok`` of ``count`` set up in ``secs``; the failed ones
    were refused (connect error, an HTTP status other than 101, an error reply to a
    setup frame), dropped (closed by the server) or timed out; ``ready_*`` are the
    seconds each successful one took, from the start of the command."""

    first: int
    count: int
    ok: int
    failed: int
    secs: float
    first_error: str
    refused: int = 0
    dropped: int = 0
    timed_out: int = 0
    ready_p50: float = -1.0
    ready_p99: float = -1.0
    ready_max: float = -1.0


def _pin_to_generator_core() -> None:
    pin_and_schedule(GENERATOR_CORE)


class Generator:
    """A running gen.c process aimed at one server port."""

    def __init__(self, binary: Path, port: int, workdir: Path) -> None:
        self.workdir = workdir
        self._plans = 0
        self.proc = subprocess.Popen(
            [str(binary), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_pin_to_generator_core,
        )
        self._expect("hello")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _expect(self, event: str) -> Json:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise GeneratorError(f"generator exited (code {self.proc.poll()}) awaiting {event}")
        reply = cast(Json, json.loads(line))
        if reply.get("ev") != event:
            raise GeneratorError(f"generator: expected {event}, got {line.strip()}")
        return reply

    def command(self, line: str, event: str = "ok") -> Json:
        self._send(line)
        return self._expect(event)

    def connect(self, plan: Plan) -> Connected:
        self._plans += 1
        path = self.workdir / f"plan-{self.pid}-{self._plans}.txt"
        plan.write(path)
        try:
            r = self.command(f"connect {path}", "connected")
        finally:
            path.unlink()
        return Connected(
            first=int(cast(int, r["first"])),
            count=int(cast(int, r["count"])),
            ok=int(cast(int, r["ok"])),
            failed=int(cast(int, r["failed"])),
            secs=float(cast(float, r["secs"])),
            first_error=str(r["first_error"]),
            refused=int(cast(int, r["refused"])),
            dropped=int(cast(int, r["dropped"])),
            timed_out=int(cast(int, r["timed_out"])),
            ready_p50=float(cast(float, r["ready_p50"])),
            ready_p99=float(cast(float, r["ready_p99"])),
            ready_max=float(cast(float, r["ready_max"])),
        )

    def reply(self, idx: int) -> bytes:
        return bytes.fromhex(str(self.command(f"reply {idx}", "reply")["hex"]))

    def template(self, priority: int, prefix: bytes, suffix: bytes, *, ack_tail: bool) -> None:
        hexes = f"{prefix.hex() or '-'} {suffix.hex() or '-'}"
        self.command(f"template {priority} {hexes} {int(ack_tail)}")

    def size(self, payload_bytes: int) -> None:
        self.command(f"size {payload_bytes}")

    def pause(self, idx: int) -> None:
        self.command(f"pause {idx}")

    def close_all(self) -> int:
        """Close every connection (RST); how many were open."""
        return int(cast(int, self.command("close")["closed"]))

    def alive(self) -> int:
        """How many connections are set up and open, after servicing them briefly."""
        return int(cast(int, self.poll(0.05)["alive"]))

    def spin(self, on: bool) -> None:
        """Whether a step polls its sockets without ever sleeping (busy)."""
        self.command(f"spin {int(on)}")

    def poll(self, secs: float) -> Json:
        return self.command(f"poll {secs}", "polled")

    def step(
        self,
        step_id: int,
        rate: float,
        secs: float,
        *,
        window: int = 0,
        mix: tuple[int, int] = (0, 100),
        quiet: float = 1.0,
        max_drain: float = 10.0,
    ) -> Json:
        """One measured step; mix is (% HIGH, % NORMAL), the rest LOW."""
        return self.command(
            f"step {step_id} {rate} {secs} {window} {mix[0]} {mix[1]} {quiet} {max_drain}", "step"
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
