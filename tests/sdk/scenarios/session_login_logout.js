'use strict';
// Log in (createIMClient) and out (close): the client's id comes from the server's
// `opened`, close() resolves, and another user then sees the first one as offline.
const { main, login, outcome, Event, collect } = require('../lib');

main(async () => {
  const alice = await login('alice');
  const bob = await login('bob');
  const aliceClose = collect(alice, Event.CLOSE);
  const onlineBefore = await bob.ping(['alice', 'bob']);
  const closed = await outcome(alice.close(), 5000, 'alice.close()');
  const onlineAfter = await bob.ping(['alice', 'bob']);
  // logging in again after a logout works (fresh session on a fresh Realtime)
  const again = await login('alice');
  const onlineAgain = await bob.ping(['alice']);
  await again.close();
  await bob.close();
  return {
    aliceId: alice.id,
    bobId: bob.id,
    onlineBefore: onlineBefore.slice().sort(),
    closed,
    closeEvents: aliceClose.map(([payload]) => payload),
    onlineAfter: onlineAfter.slice().sort(),
    againId: again.id,
    onlineAgain,
  };
});
