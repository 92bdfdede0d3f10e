'use strict';
// Same clientId + same tag on a second device: the older client gets `conflict` and
// stops; the newer one works (creates a conversation, sends, receives).
const { main, login, inbox, waitFor, until, sleep, Event, collect, TextMessage, newRealtime, cacheConversation } = require('../lib');

main(async () => {
  const olderRealtime = newRealtime();
  const older = await login('tom', { tag: 'mobile', realtime: olderRealtime });
  const jerry = await login('jerry');
  const olderConflicts = collect(older, Event.CONFLICT);
  const olderCloses = collect(older, Event.CLOSE);
  const olderReconnects = collect(older, Event.RECONNECT);
  const conflict = waitFor(older, Event.CONFLICT, { timeout: 5000 });
  const newer = await login('tom', { tag: 'mobile' });
  const newerConflicts = collect(newer, Event.CONFLICT);
  const [payload] = await conflict;

  const newerInbox = inbox(newer);
  const olderInbox = inbox(older);
  const jerryInbox = inbox(jerry);
  const conv = await newer.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const sent = await conv.send(new TextMessage('from the newer device'));
  await until(() => jerryInbox.length >= 1, { label: 'jerry got newer device message' });
  const jerryConv = await jerry.getConversation(conv.id);
  await jerryConv.send(new TextMessage('to tom'));
  await until(() => newerInbox.length >= 1, { label: 'newer device got jerry message' });
  await sleep(1500); // the older device must not come back (no reconnect after a conflict)
  const online = await jerry.ping(['tom']);
  return {
    conflict: payload,
    olderConflicts: olderConflicts.length,
    olderCloses: olderCloses.length,
    olderReconnects: olderReconnects.length,
    newerConflicts: newerConflicts.length,
    olderInbox: olderInbox.length,
    newerInbox: newerInbox.map(m => ({ text: m.text, from: m.from })),
    jerryInbox: jerryInbox.map(m => ({ text: m.text, from: m.from })),
    sentId: sent.id,
    online,
  };
});
