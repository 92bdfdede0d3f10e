'use strict';
// Delivery to every online member of a group with the right from/cid and the
// sender's id/timestamp; 20 messages sent back-to-back arrive in order everywhere.
const { main, login, inbox, until, sleep, TextMessage, cacheConversation } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const spike = await login('spike');
  const offline = 'tyke'; // a member who is not online
  const inboxes = { tom: inbox(tom), jerry: inbox(jerry), spike: inbox(spike) };
  const conv = await tom.createConversation({ members: ['jerry', 'spike', offline] });
  await cacheConversation([jerry, spike], conv.id);
  const before = Date.now();
  // 20 sends without awaiting each other: the SDK writes them back-to-back
  const sends = [];
  for (let n = 0; n < 20; n += 1) sends.push(conv.send(new TextMessage(`msg ${n}`)));
  const sent = await Promise.all(sends);
  const after = Date.now();
  await until(() => inboxes.jerry.length >= 20 && inboxes.spike.length >= 20, { label: 'all 20 delivered' });
  await sleep(200);
  const acks = sent.map(m => ({ id: m.id, timestamp: m.timestamp.getTime(), text: m.text, status: m.status.description }));
  const history = await conv.queryMessages({ limit: 100 });
  return {
    before,
    after,
    cid: conv.id,
    acks,
    received: {
      jerry: inboxes.jerry,
      spike: inboxes.spike,
      tom: inboxes.tom, // the sender itself is not sent its own message back on this socket
    },
    history: history.map(m => ({ id: m.id, text: m.text, timestamp: m.timestamp.getTime() })),
  };
});
