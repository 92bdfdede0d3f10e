'use strict';
// Bad input through a raw WebSocket client (params.kind says which), then proof that
// nothing else was hurt: a new connection logs in and chats, an existing one still
// works, and the stored history is intact.
const { main, login, inbox, until, sleep, TextMessage, RawClient, params, outcome, cacheConversation } = require('../lib');

const b64 = bytes => Buffer.from(bytes).toString('base64');

async function settle(raw, ms) {
  // let the server answer or close; return what came back
  await raw.waitClosed(ms);
  return { replies: raw.inbox.splice(0), close: raw.closeInfo, decodeErrors: raw.errors.splice(0) };
}

const attacks = {
  // text that is not base64, then base64 of bytes that are not a GenericCommand
  async garbage() {
    const raw = new RawClient('lc.proto2base64.3');
    await raw.open();
    await raw.login('mallory');
    raw.sendRaw('this is not base64 at all!!! {}');
    const first = await settle(raw, 800);
    let second = null;
    let echo = null;
    if (!raw.closeInfo) {
      raw.sendRaw(b64([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x05, 0x01]));
      second = await settle(raw, 800);
    }
    if (!raw.closeInfo) echo = await raw.request({ cmd: 'echo' }, 3000).catch(e => ({ failed: e.message }));
    raw.close();
    return { first, second, echo };
  },
  // a binary frame (valid protobuf bytes, even) on a base64 text connection
  async binaryOnBase64() {
    const raw = new RawClient('lc.proto2base64.3');
    await raw.open();
    await raw.login('mallory');
    raw.sendRaw(Buffer.from([0x08, 0x0e, 0x28, 0x63]), { binary: true }); // echo, i=99
    const result = await settle(raw, 1000);
    raw.close();
    return result;
  },
  // unknown cmd, unknown op, and an op only the server sends: each answered by `i`
  async unknownCommand() {
    const raw = new RawClient('lc.proto2base64.3');
    await raw.open();
    await raw.login('mallory');
    const ask = async (bytes, i) => {
      raw.sendRaw(b64(bytes));
      return raw.next(c => c.i === i, 3000, `reply to i=${i}`).catch(e => ({ failed: e.message }));
    };
    const unknownCmd = await ask([0x08, 0x63, 0x28, 0x0b], 11); // cmd=99, i=11
    const unknownOp = await ask([0x08, 0x01, 0x10, 0xe7, 0x07, 0x28, 0x0c], 12); // cmd=conv, op=999, i=12
    const serverOnlyOp = await ask([0x08, 0x01, 0x10, 0x1f, 0x28, 0x0d], 13); // conv/started, i=13
    const echo = await raw.request({ cmd: 'echo' }, 3000).catch(e => ({ failed: e.message }));
    const close = raw.closeInfo;
    raw.close();
    return { unknownCmd, unknownOp, serverOnlyOp, echo, close };
  },
  // commands before session open: error 4105; logging in afterwards works
  async beforeLogin() {
    const raw = new RawClient('lc.proto2base64.3');
    await raw.open();
    const convStart = await raw.request({ cmd: 'conv', op: 'start', convMessage: { m: ['a', 'b'], attr: { data: '{}' } } });
    const direct = await raw.request({ cmd: 'direct', directMessage: { msg: 'x', cid: params.cid || 'nope', dt: 'd1' } });
    const query = await raw.request({ cmd: 'session', op: 'query', sessionMessage: { sessionPeerIds: ['tom'] } });
    const opened = await raw.login('late');
    const online = await raw.request({ cmd: 'session', op: 'query', sessionMessage: { sessionPeerIds: ['tom', 'late'] } });
    const close = raw.closeInfo;
    raw.close();
    return { convStart, direct, query, opened, online, close };
  },
  // a frame over 1 MiB: the connection is closed with 1009
  async oversized() {
    const raw = new RawClient('lc.proto2base64.3');
    await raw.open();
    await raw.login('mallory');
    raw.sendRaw('A'.repeat(1024 * 1024 + 4096));
    const result = await settle(raw, 3000);
    return result;
  },
  // 5000 echo requests at once
  async echoFlood() {
    const raw = new RawClient('lc.proto2base64.3');
    await raw.open();
    await raw.login('mallory');
    const count = 5000;
    const frames = [];
    for (let i = 1; i <= count; i += 1) frames.push(raw.encode({ cmd: 'echo', i: 100000 + i }));
    const start = Date.now();
    frames.forEach(frame => raw.sendRaw(frame));
    // wait until every echo is answered, or the connection is closed, or 10 s
    await until(() => raw.closeInfo || raw.inbox.length >= count, { timeout: 10000, label: 'flood answers' }).catch(() => {});
    const elapsedMs = Date.now() - start;
    const replies = raw.inbox.splice(0);
    const echoIds = replies.filter(c => c.cmd === 'echo').map(c => c.i);
    const errors = replies.filter(c => c.cmd === 'error');
    const result = {
      count,
      elapsedMs,
      echoes: echoIds.length,
      distinctEchoes: new Set(echoIds).size,
      echoIdsInRange: echoIds.every(i => i > 100000 && i <= 100000 + count),
      inOrder: echoIds.every((id, k) => k === 0 || id > echoIds[k - 1]),
      errors: errors.length,
      errorCodes: Array.from(new Set(errors.map(c => c.errorMessage && c.errorMessage.code))),
      other: replies.filter(c => c.cmd !== 'echo' && c.cmd !== 'error').length,
      close: raw.closeInfo,
    };
    raw.close();
    return result;
  },
};

main(async () => {
  const attack = attacks[params.kind];
  if (!attack) throw new Error(`unknown kind ${params.kind}`);
  const tom = await login('tom');
  const jerry = await login('jerry');
  const jerryInbox = inbox(jerry);
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const baseline = [];
  for (const text of ['one', 'two', 'three']) baseline.push(await conv.send(new TextMessage(text)));
  await until(() => jerryInbox.length >= 3, { label: 'baseline delivered' });

  // during a flood, a bystander keeps chatting
  const during = [];
  let stopChat = false;
  const chatter = params.kind === 'echoFlood'
    ? (async () => {
      while (!stopChat) {
        const t0 = Date.now();
        const r = await outcome(conv.send(new TextMessage(`during ${during.length}`)), 10000, 'send during flood');
        during.push({ ok: r.resolved, ms: Date.now() - t0 });
        await sleep(50);
      }
    })()
    : Promise.resolve();
  const observed = await attack();
  stopChat = true;
  await chatter;
  await sleep(100);

  // afterwards: a new connection logs in and chats; the existing ones still work
  const alice = await login('alice');
  const aliceInbox = inbox(alice);
  const tomInbox = inbox(tom);
  const aliceConv = await alice.createConversation({ members: ['tom'] });
  await aliceConv.send(new TextMessage('hi tom'));
  await until(() => tomInbox.length >= 1, { label: 'tom got alice' });
  const tomAliceConv = await tom.getConversation(aliceConv.id);
  await tomAliceConv.send(new TextMessage('hi alice'));
  await until(() => aliceInbox.length >= 1, { label: 'alice got tom' });
  const last = await conv.send(new TextMessage('after'));
  await until(() => jerryInbox.some(m => m.text === 'after'), { label: 'jerry got after' });
  const history = await conv.queryMessages({ limit: 100 });
  return {
    kind: params.kind,
    observed,
    during,
    baseline: baseline.map(m => ({ id: m.id, text: m.text, timestamp: m.timestamp.getTime() })),
    lastId: last.id,
    history: history.map(m => ({ id: m.id, text: m.text, timestamp: m.timestamp.getTime() })),
    tomInbox: tomInbox.map(m => m.text),
    aliceInbox: aliceInbox.map(m => m.text),
  };
});
