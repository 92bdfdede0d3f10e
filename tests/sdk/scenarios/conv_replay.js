'use strict';
// Conversation events missed while the connection was down are pushed again after the
// SDK's automatic re-login (r:true + st) and the SDK applies them like live ones: a
// member added, a name changed, an invitation to a new conversation (protocol.md 6.9).
const { main, login, newRealtime, connectionOf, waitFor, until, sleep, Event, collect } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const realtime = newRealtime();
  const jerry = await login('jerry', { realtime });
  const conv = await tom.createConversation({ members: ['jerry'], name: 'before' });
  const jerryConv = await jerry.getConversation(conv.id);
  await until(() => jerryConv.members.length === 2, { label: 'jerry knows the members' });
  const joined = collect(jerry, Event.MEMBERS_JOINED);
  const updated = collect(jerry, Event.CONVERSATION_INFO_UPDATED);
  const invited = collect(jerry, Event.INVITED);

  const reconnected = waitFor(jerry, Event.RECONNECT, { timeout: 8000 });
  (await connectionOf(realtime))._ws.terminate(); // no close frame: the SDK resumes
  await sleep(300); // the server has noticed the drop
  await conv.add(['spike']);
  conv.set('name', 'after');
  await conv.save();
  const other = await tom.createConversation({ members: ['jerry'], name: 'new one' });
  await reconnected;
  await until(() => joined.length >= 1 && updated.length >= 1 && invited.length >= 1, {
    label: 'missed events replayed',
  });
  await sleep(200);
  return {
    joined: joined.map(([payload, c]) => ({ cid: c.id, members: payload.members, by: payload.invitedBy })),
    updated: updated.map(([payload, c]) => ({ cid: c.id, attributes: payload.attributes, by: payload.updatedBy })),
    invited: invited.map(([payload, c]) => ({ cid: c.id, by: payload.invitedBy })),
    members: jerryConv.members.slice().sort(),
    name: jerryConv.name,
    cid: conv.id,
    other: other.id,
  };
});
