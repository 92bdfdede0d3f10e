'use strict';
// Graceful shutdown: connected clients get `goaway` (no i, no peerId) and then the
// socket closes; the SDK takes it as a disconnect. Prints {"ready": true} once logged
// in; the test then sends SIGTERM to the server and reads the final observations line.
const { main, RawClient, login, Event, waitFor, withTimeout } = require('../lib');

main(async () => {
  const raw = new RawClient('lc.proto2base64.3');
  await raw.open();
  await raw.login('tom');
  const jerry = await login('jerry');
  const sdkDisconnect = waitFor(jerry, Event.DISCONNECT, { timeout: 15000 });
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  const goaway = await raw.next(c => c.cmd === 'goaway', 15000, 'goaway');
  const close = await withTimeout(raw.closed, 15000, 'close after goaway');
  await sdkDisconnect;
  return { goaway, close, sdkDisconnected: true };
}, { deadline: 40000 });
