'use strict';
// lc.json.3 and no subprotocol: plain WebSocket clients speaking flat JSON log in,
// create a conversation, chat both ways; bad JSON gets an error reply and the
// connection stays usable.
const { main, RawClient, sleep } = require('../lib');

main(async () => {
  const u1 = new RawClient('lc.json.3');
  const u2 = new RawClient(null);
  await u1.open();
  await u2.open();
  const opened1 = await u1.request({ cmd: 'session', op: 'open', appId: 'a', peerId: 'u1', i: 1 });
  const opened2 = await u2.request({ cmd: 'session', op: 'open', appId: 'a', peerId: 'u2', i: 1 });
  const started = await u1.request({ cmd: 'conv', op: 'start', i: 2, m: ['u1', 'u2'] });
  const cid = started.cid;
  const u2Joined = await u2.next(c => c.cmd === 'conv' && c.op === 'joined', 3000, 'u2 joined');
  const u2MembersJoined = await u2.next(c => c.cmd === 'conv' && (c.op === 'members-joined' || c.op === 'members_joined'), 3000, 'u2 members-joined');
  const ack = await u1.request({ cmd: 'direct', i: 3, cid, msg: 'hello' });
  const pushed = await u2.next(c => c.cmd === 'direct', 3000, 'u2 direct');
  const reply = await u2.request({ cmd: 'direct', i: 2, cid, msg: '{"_lctype":-1,"_lctext":"hi u1"}' });
  const pushedBack = await u1.next(c => c.cmd === 'direct', 3000, 'u1 direct');

  // bad JSON, then a JSON value that is not a command object, then an unknown field
  u1.sendRaw('{"cmd": "direct", "i": 4, oops');
  const badJson = await u1.next(c => c.cmd === 'error', 3000, 'reply to bad JSON');
  u1.sendRaw('[1, 2, 3]');
  const notObject = await u1.next(c => c.cmd === 'error', 3000, 'reply to a JSON array');
  const echo = await u1.request({ cmd: 'echo', i: 5 });
  const afterBad = await u1.request({ cmd: 'direct', i: 6, cid, msg: 'still here' });
  const pushedAfterBad = await u2.next(c => c.cmd === 'direct', 3000, 'u2 direct after bad json');
  const logs = await u2.request({ cmd: 'logs', i: 7, cid, l: 10 });
  await sleep(100);
  const stillOpen = !u1.closeInfo && !u2.closeInfo;
  u1.close();
  u2.close();
  return {
    negotiated: { u1: u1.negotiated, u2: u2.negotiated },
    opened1,
    opened2,
    started,
    u2Joined,
    u2MembersJoined,
    ack,
    pushed,
    reply,
    pushedBack,
    badJson,
    notObject,
    echo,
    afterBad,
    pushedAfterBad,
    logs,
    stillOpen,
    decodeErrors: u1.errors.concat(u2.errors),
  };
});
