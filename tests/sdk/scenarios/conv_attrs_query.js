'use strict';
// Attributes and queries through the SDK: set('attr.x') / set('name') + save() reach
// the other member as `infoupdated` and read back the same way after a fetch; every
// ConversationQuery operator the SDK has; sort, limit, skip, compact and
// withLastMessagesRefreshed; temporary conversations expire with 4323.
const { main, login, until, sleep, Event, TextMessage, outcome } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const updates = [];
  jerry.on(Event.CONVERSATION_INFO_UPDATED, (payload, conv) =>
    updates.push({ cid: conv.id, attributes: payload.attributes, updatedBy: payload.updatedBy })
  );

  const g = await tom.createConversation({ members: ['jerry'], name: 'Cartoon', level: 2, topic: 'Cats' });
  const h = await tom.createConversation({ members: ['jerry', 'spike'], name: 'Chase', level: 5, tags: ['x', 'y'] });
  const k = await tom.createConversation({ members: ['spike'], name: '教育 room', level: 9 });
  await jerry.getConversation(g.id); // cached, so that the update event is emitted
  g.set('attr.color', 'red');
  g.set('name', 'Cartoon 2');
  g.set('topic', 'Dogs');
  await g.save();
  await until(() => updates.length === 1, { label: 'infoupdated' });
  const fetched = await jerry.getConversation(g.id, true);

  const ids = list => list.map(c => c.id);
  const q = () => tom.getQuery();
  await sleep(5);
  await h.send(new TextMessage('latest'));
  const found = {
    attrColor: ids(await q().equalTo('attr.color', 'red').find()),
    name: ids(await q().equalTo('name', 'Chase').find()),
    notEqual: ids(await q().notEqualTo('name', 'Chase').ascending('level').find()),
    greater: ids(await q().greaterThan('level', 2).ascending('level').find()),
    lessOrEqual: ids(await q().lessThanOrEqualTo('level', 5).descending('level').find()),
    containedIn: ids(await q().containedIn('level', [2, 9]).ascending('level').find()),
    notContainsIn: ids(await q().notContainsIn('level', [2, 9]).find()),
    containsAll: ids(await q().containsAll('tags', ['y', 'x']).find()),
    size: ids(await q().sizeEqualTo('tags', 2).find()),
    exists: ids(await q().exists('tags').find()),
    doesNotExist: ids(await q().doesNotExist('tags').ascending('level').find()),
    startsWith: ids(await q().startsWith('name', 'Ch').find()),
    contains: ids(await q().contains('name', 'rtoo').find()),
    endsWith: ids(await q().endsWith('name', 'room').find()),
    matchesI: ids(await q().matches('name', /^cha/i).find()),
    notContains: ids(await q().matches('name', /^((?!教育).)*$/).ascending('level').find()),
    containsMembers: ids(await q().containsMembers(['spike']).ascending('level').find()),
    withMembers: ids(await q().withMembers(['jerry'], true).find()),
    chained: ids(await q().containsMembers(['jerry']).greaterThan('level', 3).find()),
    defaultOrder: ids(await q().find()),
    sorted: ids(await q().addAscending('topic').addDescending('level').find()),
    paged: ids(await q().ascending('level').limit(1).skip(1).find()),
    lmExists: ids(await q().exists('lm').find()),
    lmRange: ids(await q().greaterThan('lm', new Date(Date.now() - 60000)).find()),
    createdAt: ids(await q().greaterThanOrEqualTo('createdAt', new Date(Date.now() - 60000)).ascending('createdAt').find()),
  };
  // a client without h cached (the SDK keeps a cached conversation's members)
  const viewer = await login('viewer');
  const [compact] = await viewer.getQuery().equalTo('objectId', h.id).compact(true).find();
  const [withLast] = await q().equalTo('objectId', h.id).withLastMessagesRefreshed(true).find();

  const temp = await tom.createTemporaryConversation({ members: ['jerry'], ttl: 1 });
  const tempFound = await tom.getQuery().equalTo('objectId', temp.id).find();
  await sleep(1300);
  const expiredSend = await outcome(temp.send(new TextMessage('late')));
  const expiredCount = await outcome(temp.count());
  return {
    g: g.id,
    h: h.id,
    k: k.id,
    updates,
    fetched: { name: fetched.name, attr: fetched.get('attr'), topic: fetched.get('topic'), level: fetched.get('level') },
    local: { attr: g.get('attr'), name: g.name },
    found,
    compactMembers: compact.members,
    lastMessage: withLast.lastMessage ? withLast.lastMessage.text : null,
    lastMessageAt: withLast.lastMessageAt ? withLast.lastMessageAt.getTime() : null,
    temp: { id: temp.id, found: tempFound.map(c => c.id), send: expiredSend, count: expiredCount },
  };
});
