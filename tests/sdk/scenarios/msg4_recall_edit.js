'use strict';
// Recall and edit (protocol.md 4.15): tom edits then recalls his message; jerry and
// tom's other device get messageupdate / messagerecall with the same id; history shows
// the patched message; jerry may not touch tom's message (4403) and a message that does
// not exist is 4404.
const {
  main, login, waitFor, inbox, until, TextMessage, Event, cacheConversation, outcome,
  describeMessage,
} = require('../lib');

main(async () => {
  const tom = await login('tom');
  const tomPhone = await login('tom');
  const jerry = await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry, tomPhone], conv.id);
  const jerryInbox = inbox(jerry);
  const original = await conv.send(new TextMessage('hello jerry'));
  await until(() => jerryInbox.length >= 1, { label: 'jerry got it' });
  const jerryConv = await jerry.getConversation(conv.id);
  const phoneConv = await tomPhone.getConversation(conv.id);

  const updates = Promise.all([
    waitFor(jerryConv, Event.MESSAGE_UPDATE),
    waitFor(phoneConv, Event.MESSAGE_UPDATE),
    waitFor(jerry, Event.MESSAGE_UPDATE),
  ]);
  const edited = await conv.update(original, new TextMessage('hello jerry (edited)'));
  const [[jerryUpdate, jerryReason], [phoneUpdate], [, clientConv]] = await updates;
  const historyAfterEdit = await jerryConv.queryMessages({ limit: 10 });

  const recalls = Promise.all([
    waitFor(jerryConv, Event.MESSAGE_RECALL),
    waitFor(phoneConv, Event.MESSAGE_RECALL),
  ]);
  const recalled = await conv.recall(original);
  const [[jerryRecall], [phoneRecall]] = await recalls;
  const historyAfterRecall = await jerryConv.queryMessages({ limit: 10 });

  const second = await conv.send(new TextMessage('not yours'));
  await until(() => jerryInbox.length >= 2, { label: 'jerry got the second' });
  const notYours = await outcome(jerryConv.recall(jerryInbox[1]));
  const notYoursEdit = await outcome(jerryConv.update(jerryInbox[1], new TextMessage('x')));
  const missing = await outcome(
    conv.update({ id: 'no-such-message', timestamp: second.timestamp }, new TextMessage('x'))
  );
  const describe = m => ({ ...describeMessage(m), updatedAt: m.updatedAt ? m.updatedAt.getTime() : null });
  return {
    originalId: original.id,
    edited: { id: edited.id, text: edited.text },
    jerryUpdate: describe(jerryUpdate),
    jerryReason: jerryReason === undefined ? null : jerryReason,
    phoneUpdate: describe(phoneUpdate),
    clientEventConv: clientConv.id,
    historyAfterEdit: historyAfterEdit.map(describe),
    recalled: { id: recalled.id, class: recalled.constructor.name },
    jerryRecall: describe(jerryRecall),
    phoneRecall: describe(phoneRecall),
    historyAfterRecall: historyAfterRecall.map(describe),
    notYours,
    notYoursEdit,
    missing,
  };
});
