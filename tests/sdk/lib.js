'use strict';
// Shared helpers for the SDK scenarios (tests/sdk/scenarios/*.js).
//
// A scenario drives the official leancloud-realtime SDK (or a raw WebSocket client, for
// what the SDK cannot send) against the server at $CHATROOM_WS, collects what a user
// would see, and prints ONE JSON line on stdout. tests/test_sdk*.py assert on that line.
// Scenarios must finish in a few seconds: every wait has a short timeout.
//
// Three SDK generations are installed side by side (package.json aliases); the scenario
// parameter `sdk` picks one: 'v3' (3.5.7), 'v4' (4.3.1, the default) or 'v5'
// (5.0.0-rc.8). Exports that differ between them (Event, createIMClient, how the
// server address is given) are smoothed over here; `typedMessages()` loads the
// generation's own leancloud-realtime-plugin-typed-messages.

const path = require('path');
const Module = require('module');

/** Scenario parameters: JSON in argv[2] (e.g. {"noBinary": false, "sdk": "v3"}). */
const params = process.argv[2] ? JSON.parse(process.argv[2]) : {};

const GENERATIONS = {
  v3: { sdk: 'leancloud-realtime-v3', plugin: 'leancloud-realtime-v3-typed-messages' },
  v4: { sdk: 'leancloud-realtime', plugin: 'leancloud-realtime-plugin-typed-messages' },
  v5: { sdk: 'leancloud-realtime-v5', plugin: 'leancloud-realtime-v5-typed-messages' },
};
const SDK = params.sdk || 'v4';
if (!GENERATIONS[SDK]) {
  console.error(`unknown sdk ${SDK}`);
  process.exit(3);
}
const generation = GENERATIONS[SDK];
const IM = require(generation.sdk);
const SDK_VERSION = require(`${generation.sdk}/package.json`).version;

// 3.x exports no Event table: its event names are these same strings.
const LEGACY_EVENTS = {
  MESSAGE: 'message',
  INVITED: 'invited',
  KICKED: 'kicked',
  MEMBERS_JOINED: 'membersjoined',
  MEMBERS_LEFT: 'membersleft',
  UNREAD_MESSAGES_COUNT_UPDATE: 'unreadmessagescountupdate',
  LAST_DELIVERED_AT_UPDATE: 'lastdeliveredatupdate',
  LAST_READ_AT_UPDATE: 'lastreadatupdate',
  MESSAGE_RECALL: 'messagerecall',
  MESSAGE_UPDATE: 'messageupdate',
  CONFLICT: 'conflict',
  DISCONNECT: 'disconnect',
  RECONNECT: 'reconnect',
};
const {
  Realtime,
  TextMessage,
  TypedMessage,
  messageType,
  messageField,
} = IM;
const Event = IM.Event || LEGACY_EVENTS;
const BinaryMessage = IM.BinaryMessage || class NoBinaryMessage {}; // 3.x has none
const MessageQueryDirection = IM.MessageQueryDirection || {};

// `ws` is the WebSocket implementation 4.3.1 itself uses (a dependency of the SDK).
const WebSocket = require(require.resolve('ws', {
  paths: [path.dirname(require.resolve('leancloud-realtime/package.json'))],
}));
// 4.3.1's own compiled schema (protobufjs 5), so raw clients encode exactly as the SDK.
const messages = require('leancloud-realtime/proto/message-compiled').push_server.messages2;

const WS_URL = process.env.CHATROOM_WS;
if (!WS_URL) {
  console.error('CHATROOM_WS is not set');
  process.exit(3);
}

// A cluster of two nodes (tests/sdk_harness.py) also gives $CHATROOM_WS2: clients are
// spread over both, one after the other, as a load balancer would.
const WS_URLS = [WS_URL, process.env.CHATROOM_WS2].filter(Boolean);
let spread = 0;
function nextUrl() {
  const url = WS_URLS[spread % WS_URLS.length];
  spread += 1;
  return url;
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

class TimeoutError extends Error {}

/** Reject with TimeoutError(label) if `promise` does not settle within `ms`. */
function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timeout after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// SDK side

const realtimes = [];

if (SDK === 'v3') {
  // 3.x has no RTMServers option: it asks LeanCloud's router for the endpoint. Answer
  // as the router would, with this server.
  Realtime._fetchEndpointsInfo = () => {
    const url = nextUrl();
    return Promise.resolve({ server: url, secondary: url, ttl: 3600 });
  };
}

/**
 * A Realtime pointed at the server; `noBinary` / `pushOfflineMessages` from params.
 * `server` (host:port of the HTTP port, $CHATROOM_HTTP) keeps the SDK's best-effort REST
 * call after a re-login (/1.1/rtm/notifications, protocol.md 1.3) on this machine
 * instead of the public LeanCloud router; it fails harmlessly there (the SDK wants https).
 * 5.x allows one Realtime per appId in a process, so each further one gets its own
 * appId (the server accepts any when none is configured).
 */
function newRealtime(options = {}) {
  const server = process.env.CHATROOM_HTTP;
  const appId = SDK === 'v5' && realtimes.length ? `test-app-${realtimes.length}` : 'test-app';
  const realtime = new Realtime({
    appId,
    appKey: 'test-key',
    RTMServers: SDK === 'v3' ? WS_URL : nextUrl(),
    ...(server ? { server } : {}),
    noBinary: params.noBinary !== undefined ? params.noBinary : true,
    pushOfflineMessages: Boolean(params.pushOfflineMessages),
    ...options,
  });
  realtimes.push(realtime);
  return realtime;
}

/** Log in `id` on a new Realtime (or the given one). 3.x takes the tag as 3rd argument. */
async function login(id, { realtime, tag, register } = {}) {
  const rt = realtime || newRealtime();
  if (register) rt.register(register);
  const created = SDK === 'v3' ? rt.createIMClient(id, {}, tag) : rt.createIMClient(id, tag ? { tag } : {});
  const client = await withTimeout(created, 5000, `login ${id}`);
  return client;
}

let typed = null;

/**
 * The generation's leancloud-realtime-plugin-typed-messages: { TypedMessagesPlugin,
 * FileMessage, ImageMessage, AudioMessage, VideoMessage, LocationMessage, AV }.
 * Pass `plugins: [TypedMessagesPlugin]` to newRealtime to receive rich media as these
 * classes. The 2.x/3.x plugins require('leancloud-realtime') themselves: that name is
 * pointed at this generation's package while they load; 4.x is a factory of (AV, IM).
 */
function typedMessages() {
  if (typed) return typed;
  const AV = require('leancloud-storage');
  // AV.File (which the plugins build for every received file message) would otherwise
  // look up the storage SDK's current user, which needs AV.init and the LeanCloud cloud.
  AV._config.disableCurrentUser = true;
  const pluginDir = path.dirname(require.resolve(`${generation.plugin}/package.json`));
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function redirect(request, parent, ...rest) {
    const fromPlugin = parent && parent.filename && parent.filename.startsWith(pluginDir);
    const target = fromPlugin && request === 'leancloud-realtime' ? generation.sdk : request;
    return resolve.call(this, target, parent, ...rest);
  };
  try {
    const plugin = require(generation.plugin);
    typed = { ...(typeof plugin === 'function' ? plugin(AV, IM) : plugin), AV };
  } finally {
    Module._resolveFilename = resolve;
  }
  return typed;
}

/** The SDK's Connection (WebSocketPlus) behind a Realtime: `_open()` resolves to it. */
function connectionOf(realtime) {
  return realtime._open();
}

/**
 * Record every command the SDK sends on `connection` (a decoded copy as a plain object).
 * Returns the array that fills up.
 */
function recordOutgoing(connection) {
  const sent = [];
  const original = connection.send.bind(connection);
  // eslint-disable-next-line no-param-reassign
  connection.send = (command, ...rest) => {
    const result = original(command, ...rest);
    sent.push(plain(command));
    return result;
  };
  return sent;
}

/** Resolve with the payload array of the next `event` on `emitter` that passes `filter`. */
function waitFor(emitter, event, { timeout = 5000, filter = () => true } = {}) {
  return withTimeout(
    new Promise(resolve => {
      const handler = (...payload) => {
        if (!filter(...payload)) return;
        emitter.off(event, handler);
        resolve(payload);
      };
      emitter.on(event, handler);
    }),
    timeout,
    `event ${String(event)}`
  );
}

/** Collect every `event` on `emitter` into an array (of payload arrays). */
function collect(emitter, event) {
  const seen = [];
  emitter.on(event, (...payload) => seen.push(payload));
  return seen;
}

/** Wait until `predicate()` is true (polling), or throw after `timeout` ms. */
async function until(predicate, { timeout = 5000, interval = 10, label = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) throw new TimeoutError(`timeout after ${timeout} ms: ${label}`);
    await sleep(interval);
  }
}

/** The user-visible part of an SDK error. */
function errorInfo(error) {
  if (!error) return null;
  return {
    code: error.code === undefined ? null : error.code,
    name: error.name || null,
    message: String(error.message || error),
  };
}

/** Await `promise`, expecting a rejection: returns errorInfo, or {resolved: true}. */
async function outcome(promise, ms = 5000, label = 'request') {
  try {
    const value = await withTimeout(promise, ms, label);
    return { resolved: true, value: value === undefined ? null : value };
  } catch (error) {
    if (error instanceof TimeoutError) return { resolved: false, timeout: true };
    return { resolved: false, error: errorInfo(error) };
  }
}

/** What a user sees of a Message. */
function describeMessage(message) {
  const out = {
    id: message.id,
    cid: message.cid,
    from: message.from,
    timestamp: message.timestamp instanceof Date ? message.timestamp.getTime() : message.timestamp,
    class: message.constructor.name,
    type: message.type === undefined ? null : message.type,
    status: message.status ? String(message.status.description || message.status) : null,
  };
  if (message instanceof TypedMessage) {
    out.text = message.text === undefined ? null : message.text;
    out.attributes = message.attributes === undefined ? null : message.attributes;
    const fields = message.constructor._customFields || [];
    out.fields = {};
    fields.forEach(field => {
      if (field !== '_lctext' && field !== '_lcattrs' && message[field] !== undefined) {
        out.fields[field] = message[field];
      }
    });
  } else if (message instanceof BinaryMessage) {
    out.bytes = Array.from(new Uint8Array(message.buffer));
  } else {
    out.content = message.content === undefined ? null : message.content;
  }
  return out;
}

/** What a user sees of a Conversation. */
function describeConversation(conversation) {
  return {
    id: conversation.id,
    class: conversation.constructor.name,
    name: conversation.name === undefined ? null : conversation.name,
    members: conversation.members ? Array.from(conversation.members).sort() : null,
    creator: conversation.creator === undefined ? null : conversation.creator,
    attributes: conversation._attributes || null,
  };
}

/**
 * Make each client fetch (and cache) the conversation `cid` before messages flow.
 * The SDK emits a `message` only after it has the conversation: the first message of
 * an unknown conversation waits for a conv/query while later ones may not, so without
 * this the SDK itself can emit messages out of order.
 */
function cacheConversation(clients, cid) {
  return Promise.all(clients.map(client => client.getConversation(cid)));
}

/** Collect `message` events of an IMClient as described messages. */
function inbox(client) {
  const messagesSeen = [];
  client.on(Event.MESSAGE, (message, conversation) => {
    messagesSeen.push({ ...describeMessage(message), convId: conversation.id });
  });
  return messagesSeen;
}

// ---------------------------------------------------------------------------
// Message classes a user registers (the seeds' rich-media and custom types)

class ImageMessage extends TypedMessage {}
messageType(-2)(ImageMessage);
messageField(['_lcfile'])(ImageMessage);

class LocationMessage extends TypedMessage {}
messageType(-5)(LocationMessage);
messageField(['_lcloc'])(LocationMessage);

class CustomMessage extends TypedMessage {}
messageType(1)(CustomMessage);
messageField(['priceCents', 'currency'])(CustomMessage);

const MESSAGE_CLASSES = [ImageMessage, LocationMessage, CustomMessage];

// ---------------------------------------------------------------------------
// Raw WebSocket client (for what the SDK cannot or will not send)

const CommandType = messages.CommandType;
const OpType = messages.OpType;
const invert = obj => Object.fromEntries(Object.entries(obj).map(([k, v]) => [v, k]));
const COMMAND_NAMES = invert(CommandType);
const OP_NAMES = invert(OpType);

/** A decoded protobufjs command as a plain object: enum names, numbers, no nulls. */
function plain(value, key) {
  if (value === null || value === undefined) return undefined;
  if (typeof value.toNumber === 'function' && typeof value.high === 'number') {
    return value.toNumber(); // Long
  }
  if (typeof value.toBase64 === 'function' && value.buffer !== undefined) {
    return value.toBase64(); // ByteBuffer (bytes fields)
  }
  if (value instanceof ArrayBuffer) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(item => plain(item));
  if (typeof value === 'object') {
    const out = {};
    Object.keys(value).forEach(k => {
      if (k.startsWith('$')) return;
      const v = plain(value[k], k);
      if (v === undefined) return;
      if (Array.isArray(v) && v.length === 0) return;
      out[k] = v;
    });
    return out;
  }
  if (key === 'cmd' && typeof value === 'number') return COMMAND_NAMES[value] || value;
  if (key === 'op' && typeof value === 'number') return OP_NAMES[value] || value;
  return value;
}

/**
 * A plain WebSocket client that speaks one subprotocol:
 *   'lc.proto2base64.3' (default), 'lc.protobuf2.3', 'lc.json.3', or null (none).
 * Protobuf commands are given as plain objects in the SDK schema's field names
 * ({cmd: 'session', op: 'open', sessionMessage: {...}}); JSON commands as flat objects.
 */
class RawClient {
  constructor(protocol = 'lc.proto2base64.3', { url = nextUrl() } = {}) {
    this.protocol = protocol;
    this.url = url;
    this.inbox = []; // every decoded inbound command, in order
    this.errors = []; // frames that failed to decode
    this.closeInfo = null;
    this._waiters = [];
    this._serial = 1000;
  }

  get json() {
    return this.protocol === null || this.protocol.startsWith('lc.json');
  }

  open(timeout = 5000) {
    const ws = this.protocol ? new WebSocket(this.url, this.protocol) : new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.closed = new Promise(resolve => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: String(reason || '') };
        resolve(this.closeInfo);
        this._notify();
      });
    });
    ws.on('message', data => {
      try {
        this.inbox.push(this.decode(data));
      } catch (error) {
        this.errors.push(String(error.message || error));
      }
      this._notify();
    });
    return withTimeout(
      new Promise((resolve, reject) => {
        ws.on('open', () => {
          this.negotiated = ws.protocol || null;
          resolve(this);
        });
        ws.on('error', reject);
      }),
      timeout,
      'raw websocket open'
    );
  }

  decode(data) {
    if (this.json) {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
      return JSON.parse(text);
    }
    if (typeof data === 'string') return plain(messages.GenericCommand.decode(data, 'base64'));
    return plain(messages.GenericCommand.decode(data));
  }

  encode(command) {
    if (this.json) return JSON.stringify(command);
    const pbCommand = new messages.GenericCommand(command);
    if (this.protocol.startsWith('lc.protobuf2')) return pbCommand.toBuffer();
    return pbCommand.toBase64();
  }

  send(command) {
    this.ws.send(this.encode(command));
  }

  sendRaw(data, options) {
    this.ws.send(data, options);
  }

  /** Send `command` with a fresh (or the given) `i` and wait for the reply with that `i`. */
  async request(command, timeout = 5000) {
    const i = command.i || (this._serial += 1);
    this.send({ ...command, i });
    return this.next(reply => reply.i === i, timeout, `reply to i=${i}`);
  }

  /** Wait for the first inbound command (from now on or already queued) matching `filter`. */
  next(filter = () => true, timeout = 5000, label = 'inbound command') {
    const found = this.inbox.find(filter);
    if (found) {
      this.inbox.splice(this.inbox.indexOf(found), 1);
      return Promise.resolve(found);
    }
    return withTimeout(
      new Promise((resolve, reject) => {
        this._waiters.push({ filter, resolve, reject });
        this._notify();
      }),
      timeout,
      label
    );
  }

  _notify() {
    this._waiters = this._waiters.filter(waiter => {
      const found = this.inbox.find(waiter.filter);
      if (found) {
        this.inbox.splice(this.inbox.indexOf(found), 1);
        waiter.resolve(found);
        return false;
      }
      if (this.closeInfo) {
        waiter.reject(new Error(`connection closed ${JSON.stringify(this.closeInfo)}`));
        return false;
      }
      return true;
    });
  }

  /** Resolve with close info if the server closes within `ms`, else null. */
  async waitClosed(ms) {
    try {
      return await withTimeout(this.closed, ms, 'close');
    } catch (error) {
      if (error instanceof TimeoutError) return null;
      throw error;
    }
  }

  /** session/open for `peerId` (protobuf); returns the reply. */
  login(peerId, sessionMessage = {}, extra = {}) {
    if (this.json) {
      return this.request({ cmd: 'session', op: 'open', appId: 'test-app', peerId, ...sessionMessage, ...extra });
    }
    return this.request({
      cmd: 'session',
      op: 'open',
      appId: 'test-app',
      peerId,
      ...extra,
      sessionMessage: { ua: 'raw/1', r: false, configBitmap: 59, ...sessionMessage },
    });
  }

  close() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close();
  }
}

// ---------------------------------------------------------------------------

/**
 * Run a scenario: `fn()` returns the observations, printed as one JSON line.
 * Any exception (or the hard deadline) exits non-zero with the error on stderr.
 */
function main(fn, { deadline = 45000 } = {}) {
  const killer = setTimeout(() => {
    console.error(`scenario did not finish within ${deadline} ms`);
    process.exit(4);
  }, deadline);
  Promise.resolve()
    .then(fn)
    .then(
      result => {
        clearTimeout(killer);
        process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
      },
      error => {
        clearTimeout(killer);
        console.error('scenario failed:', error && error.stack ? error.stack : error);
        process.exit(1);
      }
    );
}

module.exports = {
  WS_URL,
  params,
  SDK,
  SDK_VERSION,
  typedMessages,
  Realtime,
  Event,
  TextMessage,
  TypedMessage,
  BinaryMessage,
  ImageMessage,
  LocationMessage,
  CustomMessage,
  MESSAGE_CLASSES,
  MessageQueryDirection,
  messages,
  RawClient,
  TimeoutError,
  sleep,
  withTimeout,
  newRealtime,
  login,
  connectionOf,
  recordOutgoing,
  waitFor,
  collect,
  until,
  errorInfo,
  outcome,
  describeMessage,
  describeConversation,
  inbox,
  cacheConversation,
  plain,
  main,
};
