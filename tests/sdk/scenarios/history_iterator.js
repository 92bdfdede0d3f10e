'use strict';
// Paging with createMessagesIterator({limit: 10}) over 21 messages: 10, 10, 1 (done).
// The messages are sent back-to-back, so several share a millisecond: paging must use
// the message id to break ties and neither skip nor repeat any.
const { main, login, TextMessage } = require('../lib');

main(async () => {
  const tom = await login('tom');
  await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  const sends = [];
  for (let n = 0; n < 21; n += 1) sends.push(conv.send(new TextMessage(`p${n}`)));
  const sent = await Promise.all(sends);
  const iterator = conv.createMessagesIterator({ limit: 10 });
  const pages = [];
  for (let k = 0; k < 4; k += 1) {
    const { value, done } = await iterator.next();
    pages.push({ done, texts: value.map(m => m.text), ids: value.map(m => m.id) });
    if (done) break;
  }
  return {
    sent: sent.map(m => ({ id: m.id, text: m.text, timestamp: m.timestamp.getTime() })),
    pages,
  };
});
