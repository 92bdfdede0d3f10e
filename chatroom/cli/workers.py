"""``chatroom serve --workers N``: N server processes on one port.

The process started with ``--workers N`` serves nothing itself. It starts N workers,
``python -m chatroom serve`` with the same arguments and environment plus
``--workers 1`` and ``CHATROOM_REUSE_PORT=1``: each binds both ports with
SO_REUSEPORT (the kernel spreads new connections over them) and joins the cluster as a
node of its own, so they share state through Redis and the database as separate
machines would (docs/cluster.md).

The supervisor passes SIGTERM, SIGINT and SIGHUP on to the workers and returns once
all have exited after SIGTERM or SIGINT. A worker that exits when it was not told to is
started again, after a pause that doubles while it keeps failing. A worker of the first
start that exits before it listens (a database that cannot be reached, a port taken by
another program) ends them all: the setup cannot work, and the exit code says so.
Workers whose supervisor is gone (killed too) shut down by themselves.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import trio

from chatroom.config import Config
from chatroom.net.server import run_until_signalled

log = logging.getLogger(__name__)

READY_FD = "CHATROOM_READY_FD"  # a worker writes one byte there once it listens
# A worker reads this pipe, whose other end only the supervisor holds: at its end (the
# supervisor is gone, killed with SIGKILL too) the worker shuts down as on SIGTERM.
LIFELINE_FD = "CHATROOM_LIFELINE_FD"
FIRST_BACKOFF = 0.5  # seconds before a failed worker is started again; doubles
MAX_BACKOFF = 30.0
STABLE = 10.0  # seconds a worker must serve for its earlier failures to be forgotten
STOP_TIMEOUT = 30.0  # seconds workers get to exit after a signal; then SIGKILL
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: this one, with ``--workers 1`` (last wins)."""
    return [sys.executable, "-m", "chatroom", *argv, "--workers", "1"]


def without_password(url: str) -> str:
    """``url`` with its password replaced, for the log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def describe(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"


def announce_ready() -> None:
    """In a worker, once both ports listen: tell the supervisor, if there is one."""
    fd = os.environ.pop(READY_FD, "")
    if fd.isdigit():
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass  # the supervisor is gone; serving goes on


async def serve_as_worker(config: Config) -> None:
    """``chatroom serve`` in a worker (or alone): ``run_until_signalled``, plus a
    SIGTERM to itself when the supervisor's lifeline ends."""
    async with trio.open_nursery() as nursery:
        lifeline = os.environ.pop(LIFELINE_FD, "")
        if lifeline.isdigit():
            nursery.start_soon(_watch_lifeline, int(lifeline))
        await run_until_signalled(config, announce_ready)
        nursery.cancel_scope.cancel()


async def _watch_lifeline(fd: int) -> None:
    async with trio.lowlevel.FdStream(fd) as stream:
        while await stream.receive_some(16):
            pass
    log.warning("the supervisor is gone: shutting down")
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(self, config: Config, command: list[str]) -> None:
        self.config = config
        self.command = command
        self.env = {**os.environ, "CHATROOM_REUSE_PORT": "1"}
        self.processes: dict[int, trio.Process] = {}
        self.stopping = trio.Event()
        self.failed_at_start: int | None = None  # the exit code that ended them all
        self.codes: list[int] = []  # exit codes after the stop

    async def run(self) -> int:
        config = self.config
        log.info(
            "%d workers on port %d (HTTP %d), cluster through %s, store %s",
            config.workers,
            config.port,
            config.http_port,
            without_password(config.redis),
            without_password(config.db),
        )
        with trio.open_signal_receiver(*_SIGNALS) as signals:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._forward, signals)
                async with trio.open_nursery() as slots:
                    for index in range(1, config.workers + 1):
                        slots.start_soon(self._keep, index)
                outer.cancel_scope.cancel()
        if self.failed_at_start is not None:
            return self.failed_at_start if self.failed_at_start > 0 else 1
        # A worker killed by the signal passed on (before its handler was set) stopped too.
        return 0 if all(code <= 0 for code in self.codes) else 1

    def stop(self, signum: int) -> None:
        self.stopping.set()
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signum)

    async def _forward(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:  # certificates renewed: each worker reloads
                log.info("received SIGHUP: passing it on to the workers")
                self._signal_all(signum)
                continue
            log.info("received %s: stopping %d workers", name, len(self.processes))
            self.stop(signum)

    async def _keep(self, index: int) -> None:
        """Run worker ``index`` until the stop, starting it again when it dies."""
        await trio.lowlevel.checkpoint()
        failures, first = 0, True
        while not self.stopping.is_set():
            started = trio.current_time()
            code, was_ready = await self._run_once(index)
            served = trio.current_time() - started
            if self.stopping.is_set():
                self.codes.append(code)
                return
            if first and not was_ready:
                log.error("worker %d %s before it listened: stopping", index, describe(code))
                self.failed_at_start = code
                self.stop(signal.SIGTERM)
                return
            first = False
            # Quick failures in a row (a worker that served STABLE seconds starts over).
            failures = 0 if was_ready and served >= STABLE else failures + 1
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2**failures)
            log.warning(
                "worker %d %s after %.1f s: starting it again in %.1f s",
                index,
                describe(code),
                served,
                delay,
            )
            with trio.move_on_after(delay):
                await self.stopping.wait()

    async def _run_once(self, index: int) -> tuple[int, bool]:
        """Start worker ``index`` and wait for its exit: its code, and whether it
        said it was listening."""
        ready_read, ready_write = os.pipe()
        life_read, life_write = os.pipe()
        try:
            process = await trio.lowlevel.open_process(
                self.command,
                env={**self.env, READY_FD: str(ready_write), LIFELINE_FD: str(life_read)},
                pass_fds=(ready_write, life_read),
                process_group=0,  # a terminal's ^C reaches the supervisor only
            )
        except BaseException:
            os.close(ready_read)
            os.close(life_write)
            raise
        finally:
            os.close(ready_write)
            os.close(life_read)
        self.processes[index] = process
        if self.stopping.is_set():  # the signal came while it was starting
            process.send_signal(signal.SIGTERM)
        log.info("worker %d started (pid %d)", index, process.pid)
        try:
            async with trio.lowlevel.FdStream(ready_read) as said, trio.open_nursery() as watch:
                watch.start_soon(self._kill_if_stuck, index, process)
                ready = await said.receive_some(1) == b"1"
                code = await process.wait()
                watch.cancel_scope.cancel()
        finally:
            os.close(life_write)
        return code, ready

    async def _kill_if_stuck(self, index: int, process: trio.Process) -> None:
        await self.stopping.wait()
        await trio.sleep(STOP_TIMEOUT)
        log.warning("worker %d still runs %g s after the stop: killing it", index, STOP_TIMEOUT)
        process.kill()
