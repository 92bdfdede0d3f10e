'use strict';
// Same clientId with different tags (and without a tag): all devices stay logged in
// and every one of them receives a message sent to that user.
const { main, login, inbox, until, sleep, Event, collect, TextMessage, cacheConversation } = require('../lib');

main(async () => {
  const mobile = await login('tom', { tag: 'mobile' });
  const web = await login('tom', { tag: 'web' });
  const untagged = await login('tom');
  const conflicts = [mobile, web, untagged].map(c => collect(c, Event.CONFLICT));
  const closes = [mobile, web, untagged].map(c => collect(c, Event.CLOSE));
  const inboxes = [mobile, web, untagged].map(inbox);
  const jerry = await login('jerry');
  const conv = await jerry.createConversation({ members: ['tom'] });
  await cacheConversation([mobile, web, untagged], conv.id);
  const sent = await conv.send(new TextMessage('to every tom device'));
  await until(() => inboxes.every(box => box.length >= 1), { label: 'every tom device got it' });
  await sleep(300);
  return {
    sentId: sent.id,
    inboxes: inboxes.map(box => box.map(m => ({ id: m.id, text: m.text, from: m.from, cid: m.cid }))),
    conflicts: conflicts.map(list => list.length),
    closes: closes.map(list => list.length),
    cid: conv.id,
  };
});
