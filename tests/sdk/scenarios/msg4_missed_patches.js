'use strict';
// Missed patches (protocol.md 4.1, 4.15): jerry's connection drops; meanwhile tom edits
// and recalls; when jerry's SDK reconnects (r:true, lastPatchTime), the server replays
// the patches and jerry sees messageupdate and messagerecall.
const {
  main, login, newRealtime, connectionOf, waitFor, inbox, until, TextMessage, Event,
  cacheConversation, describeMessage,
} = require('../lib');

main(async () => {
  const tom = await login('tom');
  const realtime = newRealtime();
  const jerry = await login('jerry', { realtime });
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const got = inbox(jerry);
  const first = await conv.send(new TextMessage('first'));
  const second = await conv.send(new TextMessage('second'));
  await until(() => got.length >= 2, { label: 'jerry got both' });
  const jerryConv = await jerry.getConversation(conv.id);
  const updated = waitFor(jerryConv, Event.MESSAGE_UPDATE, { timeout: 8000 });
  const recalled = waitFor(jerryConv, Event.MESSAGE_RECALL, { timeout: 8000 });
  const order = [];
  jerry.on(Event.RECONNECT, () => order.push('reconnect'));
  jerryConv.on(Event.MESSAGE_UPDATE, () => order.push('update'));
  jerryConv.on(Event.MESSAGE_RECALL, () => order.push('recall'));
  const connection = await connectionOf(realtime);
  const reconnected = waitFor(jerry, Event.RECONNECT, { timeout: 8000 });
  const disconnected = waitFor(jerry, Event.DISCONNECT);
  connection._ws.terminate();
  await disconnected;
  await conv.update(first, new TextMessage('first (edited while you were away)'));
  await conv.recall(second);
  await reconnected;
  const [update] = await updated;
  const [recall] = await recalled;
  return {
    order,
    firstId: first.id,
    secondId: second.id,
    update: describeMessage(update),
    recall: describeMessage(recall),
  };
});
