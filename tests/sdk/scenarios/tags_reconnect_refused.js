'use strict';
// An automatic re-login (r:true) never kicks another device: when another device with
// the same tag took over while this one was offline, the re-login fails with 4111 and
// the device that took over stays logged in.
const {
  main, login, newRealtime, connectionOf, waitFor, inbox, until, sleep, Event, collect, TextMessage, RawClient, params, cacheConversation,
} = require('../lib');

main(async () => {
  // --- through the SDK
  const firstRealtime = newRealtime();
  const first = await login('tom', { tag: 'mobile', realtime: firstRealtime });
  const jerry = await login('jerry');
  const connection = await connectionOf(firstRealtime);
  const reconnectError = waitFor(first, Event.RECONNECT_ERROR, { timeout: 6000 });
  const firstReconnects = collect(first, Event.RECONNECT);
  connection._ws.terminate(); // first device drops off the network...
  const second = await login('tom', { tag: 'mobile' }); // ...and another one logs in
  const secondConflicts = collect(second, Event.CONFLICT);
  const secondCloses = collect(second, Event.CLOSE);
  const [error] = await reconnectError; // the first device comes back (r:true + st)
  await sleep(300);
  const secondInbox = inbox(second);
  const conv = await jerry.createConversation({ members: ['tom'] });
  await cacheConversation([second], conv.id);
  await conv.send(new TextMessage('still there?'));
  await until(() => secondInbox.length >= 1, { label: 'second device got message' });
  const sdk = {
    reconnectError: { code: error.code, message: error.message },
    firstReconnects: firstReconnects.length,
    secondConflicts: secondConflicts.length,
    secondCloses: secondCloses.length,
    secondInbox: secondInbox.map(m => m.text),
  };

  // --- on the wire
  const protocol = params.noBinary === false ? 'lc.protobuf2.3' : 'lc.proto2base64.3';
  const a = new RawClient(protocol);
  await a.open();
  const aOpened = await a.login('spike', { tag: 'phone' });
  const b = new RawClient(protocol);
  await b.open();
  const bOpened = await b.login('spike', { tag: 'phone' });
  const aKicked = await a.next(c => c.cmd === 'session' && c.op === 'closed', 3000, 'a kicked');
  // a's automatic re-login with its (now taken-over) token
  const a2 = new RawClient(protocol);
  await a2.open();
  const withToken = await a2.login('spike', { r: true, st: aOpened.sessionMessage.st });
  // a re-login that names the tag, while b (same tag) is online
  const a3 = new RawClient(protocol);
  await a3.open();
  const withTag = await a3.login('spike', { r: true, tag: 'phone' });
  await sleep(300);
  const bPushes = b.inbox.filter(c => c.cmd === 'session');
  const bEcho = await b.request({ cmd: 'echo' });
  [a, b, a2, a3].forEach(c => c.close());
  return {
    sdk,
    raw: { aOpened: aOpened.op, bOpened: bOpened.op, aKicked, withToken, withTag, bPushes, bEcho },
  };
});
