'use strict';
// Send and receive a TextMessage (with custom attributes, _lcattrs) in the encoding
// given by params (noBinary, pushOfflineMessages). The receiver sees the sender's id
// and timestamp, the text and attributes; history returns the same.
const { main, login, inbox, until, TextMessage, connectionOf, newRealtime, cacheConversation } = require('../lib');

main(async () => {
  const tomRealtime = newRealtime();
  const tom = await login('tom', { realtime: tomRealtime });
  const jerry = await login('jerry');
  const jerryInbox = inbox(jerry);
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const before = Date.now();
  const message = new TextMessage('hello 你好 👋').setAttributes({ mood: 'happy', n: 1, nested: { a: [1, 2] } });
  const sent = await conv.send(message);
  const after = Date.now();
  await until(() => jerryInbox.length >= 1, { label: 'jerry received' });
  const history = await conv.queryMessages({ limit: 10 });
  const connection = await connectionOf(tomRealtime);
  return {
    protocol: connection._ws.protocol,
    before,
    after,
    sent: { id: sent.id, timestamp: sent.timestamp.getTime(), status: sent.status.description, cid: sent.cid, from: sent.from },
    received: jerryInbox,
    history: history.map(m => ({ id: m.id, text: m.text, attributes: m.attributes, from: m.from, timestamp: m.timestamp.getTime() })),
    cid: conv.id,
  };
});
