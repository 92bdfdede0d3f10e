'use strict';
// Messages that must outlive the server: with {"cid": null} tom creates a conversation
// with jerry and sends five texts; with {"cid": ...} (after a restart) jerry reads that
// conversation's history and his unread count.
const { main, login, params, TextMessage } = require('../lib');

main(async () => {
  if (!params.cid) {
    const tom = await login('tom');
    const conv = await tom.createConversation({ members: ['jerry'], name: 'kept' });
    const sent = [];
    for (let n = 0; n < 5; n += 1) sent.push(await conv.send(new TextMessage(`kept ${n}`)));
    return { cid: conv.id, ids: sent.map(m => m.id) };
  }
  const jerry = await login('jerry');
  const conv = await jerry.getConversation(params.cid);
  const history = await conv.queryMessages({ limit: 10 });
  return {
    name: conv.name,
    ids: history.map(m => m.id),
    texts: history.map(m => m.text),
    from: history.map(m => m.from),
  };
});
