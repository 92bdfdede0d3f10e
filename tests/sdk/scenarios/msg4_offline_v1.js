'use strict';
// Protocol v1 (pushOfflineMessages: true, lc.*.1): messages sent while jerry is offline
// come as ordinary `message` events right after login, oldest first, at most 20 per
// conversation; no unread notification.
const {
  main, login, inbox, until, TextMessage, Event, collect, newRealtime, sleep,
} = require('../lib');

main(async () => {
  const tom = await login('tom');
  const conv = await tom.createConversation({ members: ['jerry'] });
  const sent = [];
  for (let n = 0; n < 23; n += 1) sent.push(await conv.send(new TextMessage(`m${n}`)));
  const realtime = newRealtime({ pushOfflineMessages: true });
  const connection = await realtime._open();
  const protocol = connection._ws.protocol;
  // listeners before the login completes: the offline messages follow `opened` at once
  const jerry = await realtime.createIMClient('jerry');
  const got = inbox(jerry);
  const unread = collect(jerry, Event.UNREAD_MESSAGES_COUNT_UPDATE);
  await until(() => got.length >= 20, { label: '20 offline messages' });
  await sleep(300);
  return {
    protocol,
    sent: sent.map(m => m.id),
    received: got.map(m => ({ id: m.id, text: m.text, from: m.from })),
    unreadEvents: unread.length,
  };
});
