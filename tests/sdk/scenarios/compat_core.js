'use strict';
// The core flows, for any SDK generation (params.sdk: v3, v4, v5), each user on a
// Realtime of their own with the generation's typed-messages plugin: login; 1:1 and
// group messages both ways; member events (created, removed, added back); a receipt
// (delivered, then read); an image message (plugin class on both ends); a chatroom
// both ways; history; unread counts at a re-login (protocol v3); two clients on one
// Realtime, the second with unread messages waiting (which client gets what: the
// peerId rule); temporary conversations (5.x asks for unique ones); protocol v1
// (pushOfflineMessages, gone from 5.0.0-rc.6 on): offline messages at login, for the
// first and for a second client of one Realtime.
const {
  main, login, newRealtime, typedMessages, waitFor, collect, until, sleep, describeMessage,
  cacheConversation, TextMessage, Event, SDK, SDK_VERSION,
} = require('../lib');

const { ImageMessage, TypedMessagesPlugin, AV } = typedMessages();

/** Every `message` of a client, described; a file message also with its file's URL. */
function inbox(client) {
  const seen = [];
  client.on(Event.MESSAGE, (message, conversation) => {
    const file = message.getFile ? message.getFile() : null;
    seen.push({
      ...describeMessage(message),
      convId: conversation.id,
      ...(file ? { file: file.url(), fileIsAV: file instanceof AV.File } : {}),
    });
  });
  return seen;
}

const realtime = () => newRealtime({ plugins: [TypedMessagesPlugin] });
const text = m => m.text === undefined ? null : m.text;
const shown = list => list.map(m => ({ from: m.from, text: m.text, convId: m.convId, class: m.class }));

function memberEvents(client) {
  const ev = {};
  ['INVITED', 'KICKED', 'MEMBERS_JOINED', 'MEMBERS_LEFT'].forEach(name => {
    ev[name] = collect(client, Event[name]);
  });
  return ev;
}

/** The member events of one conversation, as {event: [payload...]}. */
function eventsOf(ev, cid) {
  const out = {};
  Object.entries(ev).forEach(([name, seen]) => {
    out[name] = seen
      .filter(([, conv]) => conv.id === cid)
      .map(([payload]) => ({
        initBy: payload.invitedBy || payload.kickedBy || payload.initBy || null,
        members: payload.members ? payload.members.slice().sort() : null,
      }));
  });
  return out;
}

async function chatroomBothWays(tom, jerry, inboxes) {
  const room = SDK === 'v3'
    ? await tom.createConversation({ name: 'lobby', transient: true })
    : await tom.createChatRoom({ name: 'lobby' });
  const jerryRoom = await jerry.getConversation(room.id);
  await jerryRoom.join();
  await room.send(new TextMessage('room: from tom'));
  await jerryRoom.send(new TextMessage('room: from jerry'));
  await until(
    () => inboxes.jerry.some(m => m.convId === room.id) && inboxes.tom.some(m => m.convId === room.id),
    { label: 'chatroom messages' }
  );
  return room.id;
}

async function receipt(direct, jerryDirect) {
  const delivered = waitFor(direct, Event.LAST_DELIVERED_AT_UPDATE);
  const sent = await direct.send(new TextMessage('please confirm'), { receipt: true });
  await delivered;
  await until(() => String(sent.status.description || sent.status) === 'delivered', { label: 'delivered' });
  const read = waitFor(direct, Event.LAST_READ_AT_UPDATE);
  await jerryDirect.read();
  await read;
  return {
    sentAt: sent.timestamp.getTime(),
    deliveredAt: direct.lastDeliveredAt.getTime(),
    readAt: direct.lastReadAt.getTime(),
  };
}

/** Unread counts of `cid` from the next UNREAD_MESSAGES_COUNT_UPDATE naming it. */
async function unreadOf(pending, cid) {
  const [conversations] = await pending;
  const conv = conversations.find(c => c.id === cid);
  return { count: conv.unreadMessagesCount, last: conv.lastMessage ? text(conv.lastMessage) : null };
}

const unreadUpdate = (client, cid) =>
  waitFor(client, Event.UNREAD_MESSAGES_COUNT_UPDATE, { filter: convs => convs.some(c => c.id === cid) });

async function sharedRealtime(tom) {
  // bob has messages waiting; ann logs in first on the shared Realtime, bob second.
  const forBob = await tom.createConversation({ members: ['bob'], name: 'for bob' });
  await forBob.send(new TextMessage('bob 1'));
  await forBob.send(new TextMessage('bob 2'));
  const forAnn = await tom.createConversation({ members: ['ann'], name: 'for ann' });
  const shared = realtime();
  const ann = await login('ann', { realtime: shared });
  const annInbox = inbox(ann);
  const annUnread = collect(ann, Event.UNREAD_MESSAGES_COUNT_UPDATE);
  await forAnn.send(new TextMessage('ann alone'));
  await until(() => annInbox.length >= 1, { label: 'ann alone on the socket' });
  const bobClientPending = login('bob', { realtime: shared });
  const bob = await bobClientPending;
  const bobUnread = await unreadOf(unreadUpdate(bob, forBob.id), forBob.id);
  const bobInbox = inbox(bob);
  await forAnn.send(new TextMessage('ann shared'));
  await forBob.send(new TextMessage('bob shared'));
  await until(() => annInbox.length >= 2 && bobInbox.length >= 1, { label: 'both clients of the shared socket' });
  await sleep(200); // anything misrouted would have arrived by now
  return {
    bobUnread,
    annUnreadConvs: [].concat(...annUnread.map(([convs]) => convs.map(c => c.id))).filter(id => id === forBob.id),
    ann: annInbox.map(m => ({ text: m.text, convId: m.convId === forAnn.id ? 'forAnn' : m.convId })),
    bob: bobInbox.map(m => ({ text: m.text, convId: m.convId === forBob.id ? 'forBob' : m.convId })),
  };
}

async function temporary(tom, jerry) {
  if (!tom.createTemporaryConversation) return null; // 3.x has none
  const first = await tom.createTemporaryConversation({ members: ['jerry'] });
  const second = await tom.createTemporaryConversation({ members: ['jerry'] });
  const fromJerry = await jerry.createTemporaryConversation({ members: ['tom'] });
  const jerryInbox = inbox(jerry);
  await first.send(new TextMessage('temporary hello'));
  await until(() => jerryInbox.some(m => m.convId === first.id), { label: 'temporary message' });
  return {
    sameForSecond: second.id === first.id,
    sameForJerry: fromJerry.id === first.id,
    temporaryIds: [first.id, second.id, fromJerry.id].every(id => id.startsWith('_tmp:')),
    expiresLater: first.expiredAt.getTime() > Date.now(),
  };
}

async function offlineV1(tom) {
  if (SDK === 'v5') return null;
  const forOlive = await tom.createConversation({ members: ['olive'], name: 'for olive' });
  const forPat = await tom.createConversation({ members: ['pat'], name: 'for pat' });
  for (const t of ['olive 1', 'olive 2', 'olive 3']) await forOlive.send(new TextMessage(t));
  for (const t of ['pat 1', 'pat 2']) await forPat.send(new TextMessage(t));
  const v1 = newRealtime({ pushOfflineMessages: true, plugins: [TypedMessagesPlugin] });
  const olive = await login('olive', { realtime: v1 });
  const oliveInbox = inbox(olive);
  await until(() => oliveInbox.length >= 3, { label: 'olive offline messages' });
  const pat = await login('pat', { realtime: v1 });
  const patInbox = inbox(pat);
  await until(() => patInbox.length >= 2, { label: 'pat offline messages' });
  await sleep(200); // anything misrouted would have arrived by now
  return {
    protocol: (await v1._open())._ws.protocol,
    olive: oliveInbox.map(m => m.text),
    pat: patInbox.map(m => m.text),
  };
}

main(async () => {
  const tom = await login('tom', { realtime: realtime() });
  const jerry = await login('jerry', { realtime: realtime() });
  let spike = await login('spike', { realtime: realtime() });
  const ev = { tom: memberEvents(tom), jerry: memberEvents(jerry), spike: memberEvents(spike) };
  const inboxes = { tom: inbox(tom), jerry: inbox(jerry), spike: inbox(spike) };

  // 1:1 both ways
  const direct = await tom.createConversation({ members: ['jerry'], name: 'direct' });
  await cacheConversation([jerry], direct.id);
  const jerryDirect = await jerry.getConversation(direct.id);
  await direct.send(new TextMessage('hi jerry'));
  await jerryDirect.send(new TextMessage('hi tom'));
  await until(() => inboxes.jerry.length >= 1 && inboxes.tom.length >= 1, { label: '1:1 both ways' });

  // group both ways, then an image message through the plugin
  const group = await tom.createConversation({ members: ['jerry', 'spike'], name: 'group' });
  await cacheConversation([jerry, spike], group.id);
  const spikeGroup = await spike.getConversation(group.id);
  await group.send(new TextMessage('group: from tom'));
  await spikeGroup.send(new TextMessage('group: from spike'));
  const file = AV.File.withURL('cat.png', 'https://example.com/cat.png');
  file.id = 'file-1';
  const image = new ImageMessage(file);
  image.setText('a cat');
  await group.send(image);
  await until(
    () => inboxes.jerry.filter(m => m.convId === group.id).length >= 3 && inboxes.tom.some(m => m.convId === group.id),
    { label: 'group messages' }
  );
  const [jerryImage] = inboxes.jerry.filter(m => m.class === 'ImageMessage');

  // member events: created (above), spike removed, spike added back
  await group.remove(['spike']);
  await until(() => ev.spike.KICKED.length >= 1 && ev.jerry.MEMBERS_LEFT.length >= 1, { label: 'kicked' });
  await group.add(['spike']);
  await until(
    () => ev.spike.INVITED.filter(([, c]) => c.id === group.id).length >= 2 &&
      ev.jerry.MEMBERS_JOINED.filter(([, c]) => c.id === group.id).length >= 2,
    { label: 'invited back' }
  );

  const receipts = await receipt(direct, jerryDirect);
  const roomId = await chatroomBothWays(tom, jerry, inboxes);
  const history = await jerryDirect.queryMessages({ limit: 10 });

  // unread counts at a re-login (protocol v3)
  await spike.close();
  await group.send(new TextMessage('while spike was away 1'));
  const lastAway = await group.send(new TextMessage('while spike was away 2'));
  const spikeRealtime = realtime();
  spike = await login('spike', { realtime: spikeRealtime });
  const spikeUnread = await unreadOf(unreadUpdate(spike, group.id), group.id);
  const protocol = (await spikeRealtime._open())._ws.protocol;

  const shared = await sharedRealtime(tom);
  const temp = await temporary(tom, jerry);
  const v1 = await offlineV1(tom);

  return {
    sdk: SDK_VERSION,
    protocol,
    direct: { tom: shown(inboxes.tom.filter(m => m.convId === direct.id)).slice(0, 1), jerry: shown(inboxes.jerry.filter(m => m.convId === direct.id)).slice(0, 1) },
    group: {
      tom: shown(inboxes.tom.filter(m => m.convId === group.id)),
      jerry: shown(inboxes.jerry.filter(m => m.convId === group.id)),
      spike: shown(inboxes.spike.filter(m => m.convId === group.id)),
    },
    image: jerryImage ? { class: jerryImage.class, text: jerryImage.text, file: jerryImage.file, fileIsAV: jerryImage.fileIsAV } : null,
    events: { tom: eventsOf(ev.tom, group.id), jerry: eventsOf(ev.jerry, group.id), spike: eventsOf(ev.spike, group.id) },
    receipts,
    room: {
      tom: shown(inboxes.tom.filter(m => m.convId === roomId)),
      jerry: shown(inboxes.jerry.filter(m => m.convId === roomId)),
    },
    history: history.map(m => ({ from: m.from, text: text(m) })),
    spikeUnread: { ...spikeUnread, lastAway: text(lastAway) },
    shared,
    temp,
    v1,
  };
});
