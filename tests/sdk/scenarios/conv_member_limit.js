'use strict';
// With CHATROOM_MAX_MEMBERS=5: a conversation of 5 members (creator included) can be
// created, one of 6 is refused with 4304 and nobody is invited to it.
const { main, login, outcome, sleep, Event, collect } = require('../lib');

main(async () => {
  const owner = await login('owner');
  const m5 = await login('m5');
  const invitedM5 = collect(m5, Event.INVITED);
  const fits = await outcome(owner.createConversation({ members: ['m1', 'm2', 'm3', 'm4'] }), 5000, 'create 5');
  const tooMany = await outcome(owner.createConversation({ members: ['m1', 'm2', 'm3', 'm4', 'm5'] }), 5000, 'create 6');
  await sleep(300);
  return {
    fits: fits.resolved ? { resolved: true, members: fits.value.members.slice().sort() } : fits,
    tooMany: tooMany.resolved ? { resolved: true, id: tooMany.value.id } : tooMany,
    invitedM5: invitedM5.length,
  };
});
