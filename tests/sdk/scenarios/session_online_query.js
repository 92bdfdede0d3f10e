'use strict';
// client.ping(ids) answers with the ids that are online now.
const { main, login } = require('../lib');

main(async () => {
  const a = await login('A');
  await login('B');
  const d = await login('D');
  await d.close(); // logged in, then out
  const online = await a.ping(['A', 'B', 'C', 'D']);
  const onlyOffline = await a.ping(['C', 'D']);
  return { online: online.slice().sort(), onlyOffline };
});
