'use strict';
// Create 1:1 and group conversations with members, name and custom attributes; every
// member (creator included) gets `invited` and `membersjoined`; `unique: true` twice
// gives the same conversation.
const { main, login, until, sleep, Event, collect, describeConversation } = require('../lib');

function events(client) {
  return {
    invited: collect(client, Event.INVITED),
    joined: collect(client, Event.MEMBERS_JOINED),
  };
}

const show = ({ invited, joined }, cid) => ({
  invited: invited.filter(([, c]) => c.id === cid).map(([payload]) => payload),
  membersjoined: joined
    .filter(([, c]) => c.id === cid)
    .map(([payload]) => ({ ...payload, members: payload.members.slice().sort() })),
});

main(async () => {
  const tom = await login('tom');
  const jerry = await login('jerry');
  const spike = await login('spike');
  const ev = { tom: events(tom), jerry: events(jerry), spike: events(spike) };
  const before = Date.now();

  const direct = await tom.createConversation({ members: ['jerry'], name: 'Tom & Jerry', color: 'blue', level: 3 });
  const group = await tom.createConversation({ members: ['jerry', 'spike'], name: 'Cartoon', topic: { lang: 'en' } });
  await until(
    () =>
      ['tom', 'jerry'].every(u => ev[u].invited.some(([, c]) => c.id === direct.id) && ev[u].joined.some(([, c]) => c.id === direct.id)) &&
      ['tom', 'jerry', 'spike'].every(u => ev[u].invited.some(([, c]) => c.id === group.id) && ev[u].joined.some(([, c]) => c.id === group.id)),
    { label: 'invited + membersjoined for all' }
  );
  // what another member sees when fetching it from the server
  const jerryDirect = await jerry.getConversation(direct.id, true);
  const spikeGroup = await spike.getConversation(group.id, true);

  const unique1 = await tom.createConversation({ members: ['spike'], unique: true, name: 'u' });
  await until(() => ev.spike.invited.some(([, c]) => c.id === unique1.id), { label: 'unique invited' });
  await sleep(200);
  const countsBefore = { tom: ev.tom.invited.length, spike: ev.spike.invited.length };
  const unique2 = await tom.createConversation({ members: ['spike'], unique: true, name: 'u' });
  const unique3 = await spike.createConversation({ members: ['tom'], unique: true }); // same member set
  await sleep(300);
  const countsAfter = { tom: ev.tom.invited.length, spike: ev.spike.invited.length };
  return {
    before,
    direct: { ...describeConversation(direct), createdAt: direct.createdAt ? direct.createdAt.getTime() : null },
    group: describeConversation(group),
    jerryDirect: {
      ...describeConversation(jerryDirect),
      color: jerryDirect.get('color'),
      level: jerryDirect.get('level'),
      createdAt: jerryDirect.createdAt ? jerryDirect.createdAt.getTime() : null,
    },
    spikeGroup: { ...describeConversation(spikeGroup), topic: spikeGroup.get('topic') },
    events: {
      direct: { tom: show(ev.tom, direct.id), jerry: show(ev.jerry, direct.id), spike: show(ev.spike, direct.id) },
      group: { tom: show(ev.tom, group.id), jerry: show(ev.jerry, group.id), spike: show(ev.spike, group.id) },
    },
    unique: { first: unique1.id, second: unique2.id, third: unique3.id, countsBefore, countsAfter },
  };
});
