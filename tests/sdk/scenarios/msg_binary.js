'use strict';
// BinaryMessage with an ArrayBuffer: the receiver (and history) get the same bytes.
const { main, login, inbox, until, BinaryMessage, TextMessage, cacheConversation } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const jerryInbox = inbox(jerry);
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const bytes = new Uint8Array(300);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = (i * 7 + 3) % 256; // includes 0x00 and 0xff
  bytes[0] = 0;
  bytes[1] = 255;
  const sent = await conv.send(new BinaryMessage(bytes.buffer));
  const empty = await conv.send(new BinaryMessage(new Uint8Array([0]).buffer));
  await conv.send(new TextMessage('after binary'));
  await until(() => jerryInbox.length >= 3, { label: 'jerry received 3' });
  const history = await conv.queryMessages({ limit: 10 });
  return {
    expected: Array.from(bytes),
    sent: [sent.id, empty.id],
    received: jerryInbox,
    history: history.map(m => ({
      id: m.id,
      class: m.constructor.name,
      bytes: m instanceof BinaryMessage ? Array.from(new Uint8Array(m.buffer)) : null,
      text: m.text === undefined ? null : m.text,
    })),
  };
});
