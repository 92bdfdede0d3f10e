'use strict';
// Sending into a conversation that does not exist, or as a non-member, makes send()
// reject with 4401 (INVALID_MESSAGING_TARGET, protocol.md 4.11); nothing is delivered.
const { main, login, outcome, inbox, sleep, TextMessage } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const spike = await login('spike');
  const jerryInbox = inbox(jerry);
  const tomInbox = inbox(tom);
  const conv = await tom.createConversation({ members: ['jerry'] });
  // spike is not a member, but builds the conversation object from its id (public API)
  const spikeView = await spike.parseConversation({ id: conv.id, members: ['jerry', 'tom'] });
  const notMember = new TextMessage('let me in');
  const asNonMember = await outcome(spikeView.send(notMember), 5000, 'send as non-member');
  // a conversation id that does not exist
  const ghost = await tom.parseConversation({ id: '0000000000000000deadbeef', members: ['tom', 'jerry'] });
  const toGhost = new TextMessage('anyone?');
  const toMissing = await outcome(ghost.send(toGhost), 5000, 'send to missing conversation');
  // the conversation still works for its members
  const ok = await conv.send(new TextMessage('fine'));
  await sleep(300);
  const history = await conv.queryMessages({ limit: 10 });
  return {
    asNonMember,
    asNonMemberStatus: notMember.status.description,
    toMissing,
    toMissingStatus: toGhost.status.description,
    okId: ok.id,
    jerryInbox: jerryInbox.map(m => m.text),
    tomInbox: tomInbox.map(m => m.text),
    history: history.map(m => m.text),
  };
});
