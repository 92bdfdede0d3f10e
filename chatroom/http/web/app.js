// chatroom's live-stream page: the flat JSON protocol (lc.json.3) over a WebSocket,
// no build step, no dependency. README "Live-stream page" and docs/protocol.md say
// what each command does; this file only shows how a page uses them.
"use strict";

const TERMINAL = new Set([4100, 4103, 4110, 4111]); // the server says: do not come back
const PRIORITY = { high: 1, normal: 2, low: 3 };
const PRIORITY_NAME = { 1: "high", 2: "normal", 3: "low" };
const LANES = 8;
const MAX_ITEMS = 200; // the side list keeps the newest ones
const $ = (id) => document.getElementById(id);

const view = {
  state: $("connection-state"), online: $("online-count"), missed: $("missed-count"),
  list: $("messages"), stage: $("stage"), title: $("stage-title"), typing: $("typing"),
  input: $("message-input"), priority: $("priority"), send: $("send"),
  room: $("room"), name: $("name"),
};

function socketUrl() {
  const given = new URLSearchParams(location.search).get("ws");
  if (given) return given;
  const port = document.querySelector('meta[name="chatroom-websocket-port"]').content;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.hostname || "127.0.0.1"}:${port}/`;
}

// ---------------------------------------------------------------------------
// the connection: requests matched to replies by "i", pushes to onPush

class Connection {
  constructor(url, peerId, handlers) {
    Object.assign(this, { url, peerId, handlers });
    this.nextI = 1; this.waiting = new Map(); this.token = null;
    this.failures = 0; this.stopped = false; this.ws = null; this.retry = null;
  }

  open() {
    if (this.stopped) return;
    this.handlers.state(this.failures ? "reconnecting" : "connecting", "");
    const ws = new WebSocket(this.url, "lc.json.3");
    this.ws = ws;
    ws.onopen = () => this.login().catch((err) => this.fail(err));
    ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    ws.onclose = (e) => this.closed(e.code, e.reason);
  }

  request(cmd, timeoutMs = 10000) {
    const i = this.nextI++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiting.delete(i); reject(new Error("no reply")); }, timeoutMs);
      this.waiting.set(i, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...cmd, i }));
    });
  }

  receive(cmd) {
    const waiter = cmd.i !== undefined && this.waiting.get(cmd.i);
    if (waiter) {
      this.waiting.delete(cmd.i); clearTimeout(waiter.timer);
      const failed = cmd.cmd === "error" || (cmd.cmd === "ack" && cmd.code !== undefined);
      failed ? waiter.reject(Object.assign(new Error(cmd.reason), { code: cmd.code })) : waiter.resolve(cmd);
    } else if (cmd.cmd === "session" && cmd.op === "closed") {
      this.stopped = true; // another device took over (4111): stay out
      this.handlers.state("closed", `${cmd.code || ""} ${cmd.reason || "session closed"}`);
    } else if (cmd.i === undefined) {
      this.handlers.push(cmd);
    }
  }

  async openSession() {
    const open = { cmd: "session", op: "open", appId: "chatroom", peerId: this.peerId };
    try {
      return await this.request(this.token ? { ...open, r: true, st: this.token } : open);
    } catch (err) {
      if (err.code !== 4112) throw err; // 4112: the server forgot us (it restarted)
      return await this.request({ ...open, r: true });
    }
  }

  async login() {
    const reply = await this.openSession().catch((err) => {
      // Refused (4100, 4102, 4103, 4111...): it would be refused again, so stay out.
      // No reply in time, or the connection closing, carries no code: that is retried.
      if (err.code !== undefined) this.stopped = true;
      throw err;
    });
    this.token = reply.st; this.failures = 0;
    // Not "live" yet: the room decides (once it is joined again and counted).
    await this.handlers.live();
  }

  fail(err) {
    this.handlers.system(`error: ${err.code || ""} ${err.message}`);
    this.ws.close();
  }

  closed(code, reason) {
    for (const { reject, timer } of this.waiting.values()) { clearTimeout(timer); reject(new Error("connection closed")); }
    this.waiting.clear();
    const why = code ? `${code}${reason ? " " + reason : ""}` : "";
    if (this.stopped || TERMINAL.has(code)) { this.handlers.state("closed", why); return; }
    this.failures += 1;
    const delay = Math.min(30, 0.5 * 2 ** (this.failures - 1)) * (0.5 + Math.random() / 2);
    this.handlers.state("reconnecting", `${why ? "closed " + why + "; " : ""}retry in ${delay.toFixed(1)} s`);
    this.retry = setTimeout(() => this.open(), delay * 1000);
  }

  stop() {
    // Log out, or give up a connection still being made (it would log in) and the
    // retry that is due: a replaced connection must not stay logged in behind the page.
    this.stopped = true;
    clearTimeout(this.retry);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ cmd: "session", op: "close" }));
    } else if (this.ws) {
      this.ws.close();
    }
  }
}

// ---------------------------------------------------------------------------
// the room: join by name, count, send, show, say what was missed

const room = {
  conn: null, cid: null, name: "", me: "", voices: new Set(), lane: 0, typers: new Map(),
  lastCount: 0, lastTyping: 0, missedBefore: 0, missedNow: 0,
};

function setState(state, detail) {
  if (state !== "live") view.online.textContent = "–"; // not known until counted again
  view.state.dataset.state = state;
  view.state.textContent = detail ? `${state} (${detail})` : state;
  const live = state === "live" && room.cid !== null;
  view.input.disabled = view.send.disabled = !live;
}

async function openRoom(conn, name, known) {
  // Back after a reconnection: the room watched before, unless the server lost it.
  if (known) {
    try {
      await conn.request({ cmd: "conv", op: "add", cid: known, m: [conn.peerId] });
      return known;
    } catch (err) {
      if (err.code !== 4303) throw err; // 4303: no such conversation any more
    }
  }
  // The oldest chatroom of that name; a new one when there is none.
  const where = { name, tr: true };
  const found = await conn.request({ cmd: "conv", op: "query", where, sort: "createdAt", limit: 1 });
  const existing = (found.results || [])[0];
  if (existing) {
    await conn.request({ cmd: "conv", op: "add", cid: existing.objectId, m: [conn.peerId] });
    return existing.objectId;
  }
  const made = await conn.request({ cmd: "conv", op: "start", transient: true, attr: { name } });
  return made.cid;
}

async function onLive() {
  const conn = room.conn;
  const cid = await openRoom(conn, room.name, room.cid);
  if (room.conn !== conn) return; // joined elsewhere meanwhile
  room.cid = cid;
  // The server counts what it shed per connection: a new one starts again from 0.
  room.missedBefore += room.missedNow; room.missedNow = 0;
  view.title.textContent = `# ${room.name}`;
  await refreshCount(true);
  if (room.conn !== conn || conn.ws.readyState !== WebSocket.OPEN) return;
  setState("live", ""); // in the room, its count shown: only now
}

async function refreshCount(now) {
  // Chatrooms push no join/leave events (they would flood a big room): poll, and
  // more often while the room is busy.
  if (!room.cid || room.conn.ws.readyState !== WebSocket.OPEN) return;
  if (!now && Date.now() - room.lastCount < 2000) return;
  room.lastCount = Date.now();
  try {
    const reply = await room.conn.request({ cmd: "conv", op: "count", cid: room.cid });
    view.online.textContent = String(reply.count);
  } catch (_) { /* the next refresh will do */ }
}

function showMissed(count) {
  // The server dropped messages for this viewer because it fell behind (its queue
  // was full): it says how many so far on this connection, at most once a second.
  room.missedNow = count;
  view.missed.textContent = String(room.missedBefore + room.missedNow);
}

function content(text, attrs) {
  return JSON.stringify(attrs ? { _lctype: -1, _lctext: text, _lcattrs: attrs } : { _lctype: -1, _lctext: text });
}

function parse(msg) {
  try {
    const value = JSON.parse(msg);
    if (value && typeof value === "object") {
      const attrs = value._lcattrs || {};
      const priority = PRIORITY[attrs.priority] ? attrs.priority : undefined;
      return { text: typeof value._lctext === "string" ? value._lctext : msg, priority, typing: attrs.typing === true };
    }
  } catch (_) { /* plain text */ }
  return { text: String(msg), priority: undefined, typing: false };
}

function onPush(cmd) {
  if (cmd.cmd === "direct" && cmd.cid === room.cid) {
    const body = parse(cmd.msg || "");
    if (body.typing) { showTyping(cmd.fromPeerId); return; }
    room.typers.delete(cmd.fromPeerId);
    renderTyping();
    // The push says the priority it was sent with; a message from a client that put
    // it in _lcattrs (chatroom.client does) says it there.
    const priority = PRIORITY_NAME[cmd.priority] || body.priority || "normal";
    show(cmd.fromPeerId, body.text, priority, cmd.timestamp);
    // A voice not heard before is likely a new viewer: count again now.
    const newVoice = !room.voices.has(cmd.fromPeerId);
    room.voices.add(cmd.fromPeerId);
    refreshCount(newVoice);
  } else if (cmd.cmd === "shed" && Number.isInteger(cmd.count)) {
    showMissed(cmd.count);
  } else if (cmd.cmd === "goaway") {
    system("the server is restarting");
  }
}

function show(from, text, priority, timestamp) {
  const item = document.createElement("li");
  item.dataset.priority = priority;
  item.dataset.testid = "message";
  const who = document.createElement("span");
  who.className = "who"; who.textContent = from;
  const at = document.createElement("span");
  at.className = "at"; at.textContent = new Date(timestamp || Date.now()).toLocaleTimeString();
  item.append(who, document.createTextNode(text), at);
  view.list.append(item);
  while (view.list.children.length > MAX_ITEMS) view.list.firstElementChild.remove();
  item.scrollIntoView({ block: "end" });
  fly(text, priority);
}

function fly(text, priority) {
  const bullet = document.createElement("div");
  bullet.className = `danmaku ${priority}`;
  bullet.textContent = text;
  room.lane = (room.lane + 1) % LANES;
  bullet.style.top = `${6 + room.lane * (84 / LANES)}%`;
  bullet.style.animationDuration = `${priority === "high" ? 10 : 7 + Math.random() * 2}s`;
  bullet.addEventListener("animationend", () => bullet.remove());
  view.stage.append(bullet);
}

function system(text) {
  const item = document.createElement("li");
  item.className = "system"; item.textContent = text;
  view.list.append(item);
}

function showTyping(who) {
  room.typers.set(who, Date.now() + 3000);
  renderTyping();
  setTimeout(renderTyping, 3100);
}

function renderTyping() {
  const now = Date.now();
  for (const [who, until] of room.typers) if (until < now) room.typers.delete(who);
  const names = [...room.typers.keys()];
  view.typing.textContent = names.length ? `${names.slice(0, 3).join(", ")} typing…` : "";
}

async function send(event) {
  event.preventDefault();
  const text = view.input.value.trim();
  if (!text || !room.cid) return;
  const priority = view.priority.value;
  view.input.value = "";
  try {
    const ack = await room.conn.request({
      cmd: "direct", cid: room.cid, msg: content(text), priority: PRIORITY[priority],
    });
    show(room.me, text, priority, ack.t);
  } catch (err) {
    system(`not sent: ${err.code || ""} ${err.message}`);
  }
}

function typing() {
  // A transient message: never stored, only for who watches now; LOW, shed first.
  if (!room.cid || Date.now() - room.lastTyping < 2000) return;
  room.lastTyping = Date.now();
  room.conn.request({ cmd: "direct", cid: room.cid, msg: content("", { typing: true }), transient: true })
    .catch(() => {});
}

function join(event) {
  event.preventDefault();
  if (room.conn) room.conn.stop();
  room.name = view.room.value.trim();
  room.me = view.name.value.trim();
  room.cid = null; room.missedBefore = 0; room.missedNow = 0;
  room.voices.clear();
  view.list.replaceChildren(); view.missed.textContent = "0"; view.online.textContent = "0";
  // A replaced connection may still report its close: only the current one is shown.
  const current = (fn) => (...args) => (room.conn === conn ? fn(...args) : undefined);
  const conn = new Connection(socketUrl(), room.me, {
    state: current(setState), push: current(onPush), live: current(onLive), system: current(system),
  });
  room.conn = conn;
  conn.open();
}

view.name.value = `viewer-${Math.random().toString(36).slice(2, 7)}`;
$("join-form").addEventListener("submit", join);
$("send-form").addEventListener("submit", send);
view.input.addEventListener("input", typing);
setInterval(() => { refreshCount(true); }, 15000);
