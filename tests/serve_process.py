"""A real ``chatroom serve`` process for the tests of several processes (workers of
one port, nodes of a cluster): its stderr is collected line by line, a test waits for
the lines it expects, and the process is signalled or killed by its PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"chatroom listening on ws://\S+:(\d+) and http://\S+:(\d+)")
STOP_TIMEOUT = 40.0  # the supervisor gives its workers 30 s before it kills them


def free_port() -> int:
    """A port nothing listens on now (a fixed port for ``--workers``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    def __init__(self, args: list[str], env: Mapping[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "chatroom", "serve", "--host", "127.0.0.1", *args]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # the end: wakes a waiter for good
            self._changed.notify_all()

    def matches(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        with self._changed:
            return [m for line in self.lines if (m := pattern.search(line))]

    def _wait_for(self, pattern: re.Pattern[str], count: int) -> list[re.Match[str]]:
        with self._changed:
            while len(found := self.matches(pattern)) < count:
                if self.proc.poll() is not None and self.lines[-1:] == [""]:
                    raise AssertionError(f"exited {self.proc.returncode}:\n{self.tail()}")
                self._changed.wait(0.1)
            return found

    async def wait_for(self, pattern: re.Pattern[str], count: int = 1) -> list[re.Match[str]]:
        """The first ``count`` lines matching ``pattern``, once the process logged them
        (the caller's fail_after bounds the wait; the thread gives up with the process)."""
        return await trio.to_thread.run_sync(self._wait_for, pattern, count, abandon_on_cancel=True)

    async def exit_code(self) -> int:
        code = await trio.to_thread.run_sync(self.proc.wait, STOP_TIMEOUT)
        return int(code)

    def tail(self, count: int = 40) -> str:
        with self._changed:
            return "\n".join(self.lines[-count:])

    def stop(self) -> None:
        terminate(self.proc, STOP_TIMEOUT)


def terminate(proc: subprocess.Popen[str], timeout: float) -> int:
    """SIGTERM, then the exit status; killed (and reported as -9) after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


@contextmanager
def serving(args: list[str], env: Mapping[str, str] | None = None) -> Iterator[ServeProcess]:
    """A ``chatroom serve`` process for the block, stopped (SIGTERM) at its end."""
    process = ServeProcess(args, env)
    try:
        yield process
    finally:
        process.stop()
