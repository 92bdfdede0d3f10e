'use strict';
// Server hooks (docs/hooks.md) seen from the SDK: the _messageReceived endpoint of the
// test rewrites "hello" and drops anything with "buy". The receiver gets the rewritten
// text, the sender's SDK emits messageupdate with it (no reason code: the app changed
// it, not the word filter), history holds it, and a dropped message rejects the send
// with 4402 and the app's own code.
const {
  main, login, waitFor, inbox, until, TextMessage, Event, cacheConversation,
} = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const got = inbox(jerry);
  const notice = waitFor(conv, Event.MESSAGE_UPDATE);
  const sent = await conv.send(new TextMessage('hello'));
  const [updated, reason] = await notice;
  await until(() => got.length >= 1, { label: 'jerry got it' });
  let dropped = null;
  try {
    await conv.send(new TextMessage('buy cheap watches'));
  } catch (error) {
    dropped = { code: error.code, appCode: error.appCode === undefined ? null : error.appCode };
  }
  const history = await (await jerry.getConversation(conv.id)).queryMessages({ limit: 5 });
  return {
    sentId: sent.id,
    updated: { id: updated.id, text: updated.text },
    reason: reason || null,
    got: got.map(m => ({ id: m.id, text: m.text, from: m.from })),
    dropped,
    history: history.map(m => m.text),
  };
});
