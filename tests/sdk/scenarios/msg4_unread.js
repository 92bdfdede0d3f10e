'use strict';
// Unread counts (protocol.md 4.13, features.md F49-F50): messages sent while jerry is
// offline, one mentioning him, become unreadmessagescountupdate at login with the
// mentioned flag and the last message; a read on one device sets the count to 0 on his
// other device; a message received online still counts at the next login.
const {
  main, login, waitFor, inbox, until, TextMessage, Event, sleep,
} = require('../lib');

const unreadOf = async (client, cid) => {
  const [conversations] = await waitFor(client, Event.UNREAD_MESSAGES_COUNT_UPDATE, {
    filter: convs => convs.some(c => c.id === cid),
  });
  const conv = conversations.find(c => c.id === cid);
  return {
    count: conv.unreadMessagesCount,
    mentioned: conv.unreadMessagesMentioned,
    lastMessage: conv.lastMessage ? { id: conv.lastMessage.id, text: conv.lastMessage.text, from: conv.lastMessage.from } : null,
    lastMessageAt: conv.lastMessageAt ? conv.lastMessageAt.getTime() : null,
  };
};

main(async () => {
  const tom = await login('tom');
  const conv = await tom.createConversation({ members: ['jerry'] });
  await conv.send(new TextMessage('one'));
  await conv.send(new TextMessage('two @jerry').setMentionList(['jerry']));
  const last = await conv.send(new TextMessage('three'));

  const jerryA = await login('jerry');
  const atLogin = await unreadOf(jerryA, conv.id);
  const jerryB = await login('jerry');
  const onB = await unreadOf(jerryB, conv.id);

  const synced = unreadOf(jerryB, conv.id);
  const convA = await jerryA.getConversation(conv.id);
  await convA.read();
  const afterRead = await synced;

  const inboxA = inbox(jerryA);
  const online = await conv.send(new TextMessage('while online'));
  await until(() => inboxA.length >= 1, { label: 'jerry got it online' });
  await sleep(1200); // the SDK acks after up to 1 s
  await jerryA.close();
  await jerryB.close();
  const jerryC = await login('jerry');
  const later = await unreadOf(jerryC, conv.id);
  return { lastId: last.id, onlineId: online.id, atLogin, onB, afterRead, later };
});
