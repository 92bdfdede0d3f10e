"""The live-stream page (chatroom/http/web) as served by the HTTP port, and as two viewers
see it in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import functools
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from helpers import fail_after, http_get, running_server
from stall_proxy import StallProxy

from chatroom.client import connect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parents[1]
HAVE_CHROMIUM = CHROMIUM.exists()
WEB_FILES = {p.name: p.read_bytes() for p in (ROOT / "chatroom/http/web").iterdir()}
# Loaded before the page's script: every WebSocket it makes, with what it sent.
TRACE_SOCKETS = """
window.sockets = [];
window.WebSocket = class extends window.WebSocket {
  constructor(...args) {
    super(...args); this.sent = []; this.received = []; window.sockets.push(this);
    // Registered before the page's onmessage: it sees each command first.
    this.addEventListener("message", (e) => this.received.push(JSON.parse(e.data)));
  }
  send(data) { this.sent.push(JSON.parse(data)); super.send(data); }
};
"""
# Loaded after TRACE_SOCKETS: each state the page shows, with the online count shown
# then, and whether the room request (add, or query and start) had its reply by then.
TRACE_STATES = """
window.states = [];
document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  new MutationObserver(() => {
    const socket = sockets.at(-1);
    const room = socket && socket.sent.filter((c) => c.cmd === "conv" && c.op !== "count").at(-1);
    const joined = !!room && socket.received.some((r) => r.i === room.i);
    const [state, online] = [$("connection-state").textContent, $("online-count").textContent];
    states.push({ state, online, joined });
  }).observe($("connection-state"), { childList: true, characterData: true, subtree: true });
});
"""
UNKNOWN = "\u2013"  # the online count while not in the room (an en dash)
IN_USE = "sockets.filter((s) => s.readyState <= WebSocket.OPEN).length"  # connecting or open


@fail_after()
async def test_the_page_and_its_files_are_served_with_types_and_revalidation() -> None:
    async with running_server() as server:
        status, fields, body = await http_get(server.http_port, "/")
        assert status == 200
        assert fields["content-type"] == "text/html; charset=utf-8"
        assert fields["cache-control"] == "no-cache"
        assert f'content="{server.ws_port}"'.encode() in body  # where the page connects
        assert b'data-testid="online-count"' in body
        for path, kind in [("/app.js", "text/javascript"), ("/style.css", "text/css")]:
            status, fields, body = await http_get(server.http_port, path)
            assert (status, fields["content-type"]) == (200, f"{kind}; charset=utf-8"), path
            assert body == WEB_FILES[path[1:]]
            etag = fields["etag"]
            again = await http_get(server.http_port, path, f"If-None-Match: {etag}\r\n")
            assert (again[0], again[2]) == (304, b"")
        status, _, _ = await http_get(server.http_port, "/../pyproject.toml")
        assert status == 404
        status, _, _ = await http_get(server.http_port, "/nothing.js")
        assert status == 404


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, for a scenario run in a worker thread (Playwright's sync API)."""
    if not HAVE_CHROMIUM:
        pytest.fail(
            "Debian's chromium is needed at /usr/bin/chromium: apt-get install -y chromium "
            "fonts-noto-cjk fonts-noto-color-emoji (.ci/run installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def join(page: Page, room: str, name: str) -> None:
    page.get_by_test_id("room").fill(room)
    page.get_by_test_id("name").fill(name)
    page.get_by_test_id("join").click()


def paused_clock(page: Page) -> None:
    """The page's timers fire only when the test runs its clock; its time is a minute
    behind the server's, so that what the server stores is newer than the page's join."""
    start = time.time() - 60
    page.clock.install(time=start)
    page.goto("about:blank")
    page.clock.pause_at(start + 1)


def browser_scenario(http_url: str, restart: Callable[[], None], shots: Path) -> None:
    """Two pages in one room; runs in a worker thread (Playwright's sync API)."""
    from playwright.sync_api import expect

    with chromium() as browser:
        tom, ming = (browser.new_page(viewport={"width": 1280, "height": 720}) for _ in "ab")
        for page in (tom, ming):
            page.add_init_script(TRACE_SOCKETS)
        ming.add_init_script(TRACE_STATES)
        for page, name in ((tom, "Tom"), (ming, "小明")):
            page.goto(http_url)
            page.get_by_test_id("room").fill("直播间 🎬")
            page.get_by_test_id("name").fill(name)
            page.get_by_test_id("join").click()
            expect(page.get_by_test_id("connection-state")).to_have_text("live")
        expect(ming.get_by_test_id("online-count")).to_have_text("2")

        tom.get_by_test_id("message-input").fill("大家好 🎉 HIGH!")
        tom.get_by_test_id("priority").select_option("high")
        tom.get_by_test_id("send").click()
        arrived = ming.get_by_test_id("messages").locator("li").last
        expect(arrived).to_contain_text("大家好 🎉 HIGH!", timeout=1000)
        expect(arrived).to_have_attribute("data-priority", "high")
        # Ming's page marked it from the push: the message itself does not say it.
        (sent,) = tom.evaluate(
            "sockets.at(-1).sent.filter((c) => c.cmd === 'direct' && !c.transient)"
        )
        assert (sent["priority"], sent["msg"]) == (1, '{"_lctype":-1,"_lctext":"大家好 🎉 HIGH!"}')

        ming.get_by_test_id("message-input").fill("收到 👍 谢谢")
        ming.get_by_test_id("send").click()
        back = tom.get_by_test_id("messages").locator("li").last
        expect(back).to_contain_text("收到 👍 谢谢", timeout=1000)
        expect(back).to_have_attribute("data-priority", "normal")
        expect(tom.get_by_test_id("online-count")).to_have_text("2")
        tom.screenshot(path=str(shots / "page.png"))

        restart()
        state = ming.get_by_test_id("connection-state")
        expect(state).to_have_text(re.compile("reconnecting"), timeout=5000)
        expect(state).to_have_text("live", timeout=15000)
        # The page knows its room: back, it joins it again without looking it up.
        ming.wait_for_function("sockets.at(-1).sent.some((c) => c.op === 'add')")
        ops = ming.evaluate("sockets.at(-1).sent.filter((c) => c.cmd === 'conv')")
        assert [c["op"] for c in ops][:1] == ["add"]
        expect(tom.get_by_test_id("connection-state")).to_have_text("live", timeout=15000)
        # "live" each time only once the room was joined (again) and counted.
        states = ming.evaluate("states")
        assert [s["state"] for s in states if s["state"] == "live"] == ["live", "live"]
        assert any(s["state"].startswith("reconnecting") for s in states)
        for shown in states:
            live = shown["state"] == "live"
            assert (shown["joined"] and shown["online"].isdigit()) or not live, states
            assert shown["online"] == UNKNOWN or live, states  # an old count is not kept
        ming.get_by_test_id("message-input").fill("又回来了 🔁")
        ming.get_by_test_id("send").click()
        expect(tom.get_by_test_id("messages").locator("li").last).to_contain_text(
            "又回来了 🔁", timeout=1000
        )
        ming.screenshot(path=str(shots / "reconnected.png"))


@fail_after(60)
async def test_two_viewers_chat_in_chromium_and_survive_a_restart(tmp_path: Path) -> None:
    db = {"db": str(tmp_path / "chat.db")}
    scenario = functools.partial(browser_scenario, shots=tmp_path)
    await browse_across_a_restart(scenario, db, db)
    assert (await trio.Path(tmp_path / "page.png").stat()).st_size > 10_000


def lost_room_scenario(http_url: str, restart: Callable[[], None]) -> None:
    """The server comes back without the room the page watched: it makes it again."""
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(TRACE_SOCKETS)
        page.goto(http_url)
        join(page, "lobby", "Ann")
        expect(page.get_by_test_id("online-count")).to_have_text("1")  # in the room
        state = page.get_by_test_id("connection-state")
        restart()
        expect(state).to_have_text(re.compile("reconnecting"), timeout=5000)
        expect(state).to_have_text("live", timeout=15000)
        page.wait_for_function("sockets.at(-1).sent.some((c) => c.op === 'count')")  # in it
        ops = page.evaluate("sockets.at(-1).sent.filter((c) => c.cmd === 'conv')")
        assert [c["op"] for c in ops] == ["add", "query", "start", "count"]
        page.get_by_test_id("message-input").fill("still here")
        page.get_by_test_id("send").click()
        expect(page.get_by_test_id("messages").locator("li").last).to_contain_text("still here")


@fail_after(60)
async def test_the_page_makes_its_room_again_when_the_server_lost_it() -> None:
    await browse_across_a_restart(lost_room_scenario, {}, {})  # :memory: both times


async def browse_across_a_restart(
    scenario: Callable[[str, Callable[[], None]], None],
    config: Mapping[str, object],
    again: Mapping[str, object],
) -> None:
    """``scenario(page_url, restart)`` in a worker thread; ``restart()`` stops the
    server and starts one with ``again`` on the same WebSocket port."""
    restarted, stopped = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        first = await nursery.start(_serve_until, config, restarted, stopped)
        second_config = {**again, "port": first.ws_port}

        def restart() -> None:
            # The second server binds the first one's port: only once that one is gone.
            trio.from_thread.run_sync(restarted.set)
            trio.from_thread.run(stopped.wait)
            trio.from_thread.run(
                nursery.start, _serve_until, second_config, trio.Event(), trio.Event()
            )

        url = f"http://127.0.0.1:{first.http_port}/"
        await trio.to_thread.run_sync(scenario, url, restart)
        nursery.cancel_scope.cancel()


async def _serve_until(
    config: Mapping[str, object],
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with running_server(config) as running:
        task_status.started(running)
        await stop.wait()
    stopped.set()


def rejoin_scenario(http_url: str, port: int, hold: Callable[[], None]) -> None:
    """Joining again while the page's connection is retrying, then while it is being
    made: neither may go on behind the page (it would log in as the old name)."""
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(TRACE_SOCKETS)
        paused_clock(page)
        page.goto(f"{http_url}?ws=ws://127.0.0.1:{port}/")  # nothing listens there yet
        state = page.get_by_test_id("connection-state")
        join(page, "lobby", "Ann")
        expect(state).to_have_text(re.compile("^reconnecting"))  # refused; a retry is due
        hold()  # from now on, connections to the port are accepted and never answered
        join(page, "lobby", "Bob")
        expect(state).to_have_text("connecting")
        join(page, "lobby", "Cat")  # while Bob's connection is being made
        page.clock.run_for(60_000)  # Ann's retry was due long ago
        assert page.evaluate(IN_USE) == 1  # Cat's own, still being made


@fail_after(60)
async def test_joining_again_leaves_no_connection_behind() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]

        def hold() -> None:
            held.listen(8)  # the kernel accepts; nobody answers the WebSocket handshake

        async with running_server() as server:
            url = f"http://127.0.0.1:{server.http_port}/"
            await trio.to_thread.run_sync(rejoin_scenario, url, port, hold)


def refused_scenario(http_url: str) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(http_url)
        join(page, "lobby", "Ann")  # unsigned, where logins must be signed: 4102
        expect(page.get_by_test_id("messages")).to_contain_text("error: 4102")
        expect(page.get_by_test_id("connection-state")).to_have_text(re.compile("^closed"))


@fail_after(60)
async def test_a_refused_login_is_not_retried() -> None:
    async with running_server({"master_key": "secret", "signatures": "login"}) as server:
        url = f"http://127.0.0.1:{server.http_port}/"
        await trio.to_thread.run_sync(refused_scenario, url)


def missed_scenario(page_url: str, fall_behind: Callable[[], int]) -> None:
    """Tom's page watches through a proxy that stops reading for a while (the page
    itself cannot be made to fall behind) while Jerry writes."""
    from playwright.sync_api import expect

    with chromium() as browser:
        tom = browser.new_page()
        tom.goto(page_url)
        join(tom, "lobby", "Tom")
        expect(tom.get_by_test_id("online-count")).to_have_text("1")  # in the room
        expect(tom.get_by_test_id("missed-count")).to_have_text("0")
        sent = fall_behind()
        shown = "document.querySelectorAll('[data-testid=messages] li').length"
        missed = "Number(document.querySelector('[data-testid=missed-count]').textContent)"
        try:
            tom.wait_for_function(f"{shown} + {missed} >= {sent}")
        finally:  # on a timeout too: what the page had by then
            got, told = tom.evaluate(f"[{shown}, {missed}]")
            print(f"sent {sent}, shown {got}, told missed {told}")
        assert got + told == sent
        assert 0 < told < sent


@fail_after(60)
async def test_a_page_that_fell_behind_shows_how_many_messages_it_missed() -> None:
    settings = {"outbox_max_frames": 16, "shed_backlog_normal": 10**6, "shed_lag_normal": 3600}
    async with running_server(settings) as running, trio.open_nursery() as nursery:
        proxy = StallProxy(running.ws_port)
        port = await nursery.start(proxy.run)
        shed = running.server.context.counters.shed

        async def fall_behind() -> int:
            """Jerry sends while Tom's proxy reads nothing, until the server shed 30
            messages for Tom; then the proxy reads on. How many Jerry sent."""
            async with connect(running.url, "Jerry") as jerry:
                room = await jerry.open_chatroom("lobby")
                proxy.stall()
                sent = 0
                while shed.normal < 30:
                    await jerry.send(room, f"{sent:05d} " + "x" * 30_000)
                    sent += 1
                proxy.resume()
                return sent

        url = f"http://127.0.0.1:{running.http_port}/?ws=ws://127.0.0.1:{port}/"
        await trio.to_thread.run_sync(
            missed_scenario, url, functools.partial(trio.from_thread.run, fall_behind)
        )
        nursery.cancel_scope.cancel()
