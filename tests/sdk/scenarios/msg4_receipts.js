'use strict';
// Receipts (protocol.md 4.12): tom sends with {receipt: true}; jerry's SDK acks the
// delivery by itself -> tom's message becomes DELIVERED and the conversation emits
// lastdeliveredatupdate; jerry's conversation.read() -> tom gets lastreadatupdate;
// fetchReceiptTimestamps (conv/max_read) and history (ackAt/readAt) agree.
const {
  main, login, waitFor, inbox, until, TextMessage, Event, cacheConversation, outcome,
} = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const eve = await login('eve');
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const jerryInbox = inbox(jerry);
  const delivered = waitFor(conv, Event.LAST_DELIVERED_AT_UPDATE);
  const before = Date.now();
  const sent = await conv.send(new TextMessage('please confirm'), { receipt: true });
  await delivered;
  await until(() => sent.status.description === 'delivered', { label: 'delivered status' });
  const deliveredAt = conv.lastDeliveredAt.getTime();
  await until(() => jerryInbox.length >= 1, { label: 'jerry got it' });
  const read = waitFor(conv, Event.LAST_READ_AT_UPDATE);
  const jerryConv = await jerry.getConversation(conv.id);
  await jerryConv.read();
  await read;
  const readAt = conv.lastReadAt.getTime();
  const after = Date.now();

  // A fresh client of tom learns the same times from conv/max_read and from history.
  const tom2 = await login('tom');
  const conv2 = await tom2.getConversation(conv.id);
  await conv2.fetchReceiptTimestamps();
  const history = await conv2.queryMessages({ limit: 10 });
  const eveConv = await eve.getConversation(conv.id);
  const foreign = await outcome(eveConv.fetchReceiptTimestamps());
  return {
    before,
    after,
    sentId: sent.id,
    sentTimestamp: sent.timestamp.getTime(),
    status: sent.status.description,
    messageDeliveredAt: sent.deliveredAt ? sent.deliveredAt.getTime() : null,
    deliveredAt,
    readAt,
    fetched: {
      lastDeliveredAt: conv2.lastDeliveredAt && conv2.lastDeliveredAt.getTime(),
      lastReadAt: conv2.lastReadAt && conv2.lastReadAt.getTime(),
    },
    history: history.map(m => ({
      id: m.id,
      status: m.status.description,
      deliveredAt: m.deliveredAt ? m.deliveredAt.getTime() : null,
    })),
    foreign,
  };
});
