'use strict';
// Sensitive-word filtering (features.md F45): in a group of three, a hit becomes *** for
// everyone (delivered and stored) and the sender's SDK emits messageupdate with a reason
// code; a one-to-one chat is not filtered.
const {
  main, login, waitFor, inbox, until, TextMessage, Event, cacheConversation,
} = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  await login('spike');
  const group = await tom.createConversation({ members: ['jerry', 'spike'] });
  const pair = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], group.id);
  await cacheConversation([jerry], pair.id);
  const got = inbox(jerry);
  const notice = waitFor(group, Event.MESSAGE_UPDATE);
  const sent = await group.send(new TextMessage('you badword you'));
  const [updated, reason] = await notice;
  await pair.send(new TextMessage('badword between us'));
  await until(() => got.length >= 2, { label: 'jerry got both' });
  const history = await (await jerry.getConversation(group.id)).queryMessages({ limit: 5 });
  return {
    sentId: sent.id,
    updated: { id: updated.id, text: updated.text },
    reason: reason || null,
    got: got.map(m => ({ cid: m.cid, text: m.text })),
    history: history.map(m => m.text),
    groupId: group.id,
    pairId: pair.id,
  };
});
