'use strict';
// History: queryMessages({limit}) gives the newest `limit` messages in ascending order;
// without a limit the server default (20) applies; the other member sees the same.
const { main, login, TextMessage, sleep } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  const sent = [];
  for (let n = 0; n < 25; n += 1) {
    sent.push(await conv.send(new TextMessage(`m${n}`)));
  }
  const show = list => list.map(m => ({ id: m.id, text: m.text, from: m.from, timestamp: m.timestamp.getTime(), cid: m.cid }));
  const newest5 = await conv.queryMessages({ limit: 5 });
  const byDefault = await conv.queryMessages();
  const one = await conv.queryMessages({ limit: 1 });
  const jerryConv = await jerry.getConversation(conv.id);
  const jerryNewest5 = await jerryConv.queryMessages({ limit: 5 });
  const empty = await tom.createConversation({ members: ['spike'] });
  const none = await empty.queryMessages({ limit: 10 });
  return {
    sent: sent.map(m => ({ id: m.id, text: m.text, timestamp: m.timestamp.getTime() })),
    newest5: show(newest5),
    byDefault: show(byDefault),
    one: show(one),
    jerryNewest5: show(jerryNewest5),
    none: show(none),
  };
});
