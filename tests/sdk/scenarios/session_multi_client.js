'use strict';
// Several IMClients over one Realtime share one WebSocket (peerId multiplexing):
// both can send and receive, and each receives only its own pushes.
const { main, newRealtime, login, inbox, TextMessage, until, connectionOf, cacheConversation } = require('../lib');

main(async () => {
  const realtime = newRealtime();
  const tom = await login('tom', { realtime });
  const jerry = await login('jerry', { realtime });
  const connection = await connectionOf(realtime);
  const sameSocket = tom._connection === jerry._connection && tom._connection === connection;
  // a third user on their own socket, to see that pushes reach the right peer
  const spike = await login('spike');
  const tomInbox = inbox(tom);
  const jerryInbox = inbox(jerry);
  const spikeInbox = inbox(spike);

  const conv = await tom.createConversation({ members: ['jerry', 'spike'], name: 'three' });
  await cacheConversation([jerry, spike], conv.id);
  const fromTom = await conv.send(new TextMessage('from tom'));
  await until(() => jerryInbox.length >= 1 && spikeInbox.length >= 1, { label: 'jerry+spike got tom' });
  const jerryConv = await jerry.getConversation(conv.id);
  const fromJerry = await jerryConv.send(new TextMessage('from jerry'));
  await until(() => tomInbox.length >= 1 && spikeInbox.length >= 2, { label: 'tom+spike got jerry' });
  const spikeConv = await spike.getConversation(conv.id);
  const fromSpike = await spikeConv.send(new TextMessage('from spike'));
  await until(() => tomInbox.length >= 2 && jerryInbox.length >= 2, { label: 'tom+jerry got spike' });
  await new Promise(resolve => setTimeout(resolve, 200)); // nothing else should arrive
  const online = await spike.ping(['tom', 'jerry']);
  await jerry.close();
  // tom still works on the shared socket after jerry logs out
  const afterJerryLeft = await conv.send(new TextMessage('tom alone'));
  await until(() => spikeInbox.length >= 3, { label: 'spike got tom alone' });
  const onlineAfter = await spike.ping(['tom', 'jerry']);
  return {
    sameSocket,
    cid: conv.id,
    sent: { tom: fromTom.id, jerry: fromJerry.id, spike: fromSpike.id, tomAlone: afterJerryLeft.id },
    tomInbox,
    jerryInbox,
    spikeInbox,
    online: online.slice().sort(),
    onlineAfter: onlineAfter.slice().sort(),
  };
});
