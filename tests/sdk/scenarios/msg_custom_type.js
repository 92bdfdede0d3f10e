'use strict';
// A custom message type registered with messageType(1) + messageField([...]): the
// receiver parses it into the same class with the same fields.
const { main, login, inbox, until, CustomMessage, MESSAGE_CLASSES, cacheConversation } = require('../lib');

main(async () => {
  const tom = await login('tom', { register: MESSAGE_CLASSES });
  const jerry = await login('jerry', { register: MESSAGE_CLASSES });
  const jerryInbox = inbox(jerry);
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const custom = new CustomMessage();
  custom.priceCents = 1999;
  custom.currency = 'EUR';
  custom.setText('red packet');
  custom.setAttributes({ occasion: 'new year' });
  const sent = await conv.send(custom);
  await until(() => jerryInbox.length >= 1, { label: 'jerry received' });
  const history = await conv.queryMessages({ limit: 5 });
  return {
    sent: { id: sent.id, type: sent.type },
    received: jerryInbox,
    history: history.map(m => ({ id: m.id, class: m.constructor.name, priceCents: m.priceCents, currency: m.currency, text: m.text })),
  };
});
