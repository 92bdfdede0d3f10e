'use strict';
// History of big messages (60 KB each) read two ways: createMessagesIterator({limit: 10})
// and queryMessages({limit: 100}) paged by hand from the oldest message of each page
// until an empty page. Run against servers with different max_reply_bytes.
const { main, login, TextMessage } = require('../lib');

const BIG = 60000;
const big = n => `${String(n).padStart(2, '0')}${'x'.repeat(BIG)}`;
const label = message => message.text.slice(0, 2);

main(async () => {
  const tom = await login('tom');
  await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  for (let n = 0; n < 12; n += 1) await conv.send(new TextMessage(big(n)));
  const iterator = conv.createMessagesIterator({ limit: 10 });
  const iterated = [];
  for (let k = 0; k < 20; k += 1) {
    const { value, done } = await iterator.next();
    iterated.push({ done, labels: value.map(label) });
    if (done) break;
  }
  const paged = [];
  let page = await conv.queryMessages({ limit: 100 });
  for (let k = 0; k < 20 && page.length; k += 1) {
    paged.push(page.map(label));
    page = await conv.queryMessages({ limit: 100, startTime: page[0].timestamp, startMessageId: page[0].id });
  }
  return { iterated, paged };
});
