"""The command line a newcomer types: ``chatroom chat`` driven through a real
pseudo-terminal, and ``chatroom bench --help``."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import trio
from client_support import FAST, next_message
from helpers import fail_after, running_server

from chatroom.client import connect

ROOT = Path(__file__).resolve().parent.parents[1]


class Terminal:
    """The user's side of a pseudo-terminal: what was printed so far, and typing."""

    def __init__(self, fd: int):
        self.stream = trio.lowlevel.FdStream(fd)
        self.screen = ""

    async def expect(self, text: str) -> None:
        """Read until ``text`` has been printed (the test's fail_after bounds it)."""
        while text not in self.screen:
            try:
                chunk = await self.stream.receive_some()
            except OSError:  # EIO: the program ended
                chunk = b""
            assert chunk, f"the program ended before printing {text!r}:\n{self.screen}"
            self.screen += chunk.decode(errors="replace").replace("\r\n", "\n")
        self.screen = self.screen[self.screen.index(text) + len(text) :]

    async def type(self, line: str) -> None:
        await self.stream.send_all(line.encode() + b"\n")


@fail_after(30)
async def test_terminal_chat_sends_receives_counts_and_quits() -> None:
    async with running_server() as server, connect(server.url, "Tom", FAST) as tom:
        controller, user_side = pty.openpty()
        command = ["chat", server.url, "--as", "Jerry", "--room", "lobby"]
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "chatroom", *command],
            stdin=user_side,
            stdout=user_side,
            stderr=user_side,
        )
        os.close(user_side)
        terminal = Terminal(controller)
        try:
            await terminal.expect("joined lobby (1 online)")
            room = await tom.open_chatroom("lobby")
            await tom.send(room, "你好 Jerry 👋", priority="high")
            await terminal.expect("Tom [HIGH]: 你好 Jerry 👋")
            await terminal.type("hi Tom")
            got = await next_message(tom)
            assert (got.sender, got.text) == ("Jerry", "hi Tom")
            await terminal.type("/count")
            await terminal.expect("2 online in lobby")
            await terminal.type("/history 5")
            await terminal.expect("Jerry: hi Tom")
            await terminal.type("/nonsense")
            await terminal.expect("unknown command /nonsense")
            await terminal.type("/quit")
            assert await process.wait() == 0
        finally:
            process.kill()
            await terminal.stream.aclose()
        assert await tom.count(room) == 1  # Jerry logged out: the room has only Tom


@fail_after(30)
async def test_terminal_chat_says_why_it_cannot_connect() -> None:
    async with running_server() as server:
        url = server.url
    done = await trio.run_process(
        [sys.executable, "-m", "chatroom", "chat", url, "--as", "Jerry"],
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 1
    assert b"cannot connect to ws://127.0.0.1" in done.stderr
    assert b"Traceback" not in done.stderr


@fail_after(60)
async def test_bench_help_works_from_both_entry_points(tmp_path: Path) -> None:
    # ``python -m bench`` needs the clone as its cwd; ``chatroom bench`` (the same main()
    # as the console script) finds the clone from wherever it is typed.
    for command, cwd in (
        ([sys.executable, "-m", "bench", "--help"], ROOT),
        ([sys.executable, "-m", "chatroom", "bench", "--help"], tmp_path),
    ):
        done = await trio.run_process(
            command, cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )
        assert b"--scenario" in done.stdout, (command, done.stderr)


@fail_after(60)
async def test_bench_says_how_to_install_what_it_lacks() -> None:
    # Whether or not matplotlib is installed here, the bench must name it when absent.
    hide = "import sys; sys.modules['matplotlib'] = None; "  # makes importing it fail
    run = "from bench.__main__ import main; sys.exit(main(['--quick']))"
    done = await trio.run_process(
        [sys.executable, "-c", hide + run], cwd=ROOT, capture_stderr=True, check=False
    )
    assert done.returncode == 2
    assert b"pip install -e '.[bench]'" in done.stderr


@fail_after(60)
async def test_bench_report_gives_each_commit_as_ratios_to_bun_node_and_the_first(
    tmp_path: Path,
) -> None:
    # A run of two commits (--chatroom-ref 45d8680 --chatroom-ref HEAD) beside the peers,
    # printed again from its JSON the way a reader does.
    def record(server: str, saturation: int, p99: float) -> dict[str, object]:
        summary = {"saturation_deliveries_per_s": saturation, "p99_ms": p99}
        return {
            "scenario": "fanout-1000",
            "server": server,
            "run": 1,
            "steps": [],
            "summary": summary,
        }

    saved = {
        "command": "python -m bench --chatroom-ref 45d8680 --chatroom-ref HEAD",
        "started": "2026-12-02T12:00:00",
        "scheduling_label": "normal priority (nice 0)",
        "chatroom_version": "45d8680...; 9fa5c78...",
        "notes": [],
        "records": [
            record("chatroom@45d8680", 100_000, 40.0),
            record("bun_ws", 400_000, 20.0),
            record("node_ws", 50_000, 80.0),
            record("chatroom@HEAD", 200_000, 20.0),
        ],
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(saved))
    done = await trio.run_process(
        [sys.executable, "-m", "bench.report", str(path)], cwd=ROOT, capture_stdout=True
    )
    out = done.stdout.decode()
    assert "scheduling: normal priority (nice 0)" in out
    overview = out.split("### overview as ratios")[1].split("###")[0]
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in overview.splitlines()
        if " / " in line
    }
    # saturation, then its p99: chatroom's figure over the other's
    assert rows["chatroom@HEAD / bun_ws"] == ["0.50x"]
    assert rows["chatroom@HEAD / node_ws"] == ["4.00x"]
    assert rows["chatroom@HEAD / chatroom@45d8680"] == ["2.00x"]
    assert rows["chatroom@45d8680 / bun_ws"] == ["0.25x"]
    assert "chatroom@45d8680 / chatroom@45d8680" not in rows
    # the scenario's own table has p99 too, as a ratio to the first commit
    p99 = next(
        line
        for line in out.split("### fanout-1000")[1].splitlines()
        if "chatroom@HEAD" in line and "p99_ms" in line
    )
    assert p99.split("|")[-2].strip() == "0.50x"
