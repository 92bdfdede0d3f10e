'use strict';
// Keepalive: the SDK's own heartbeat (Connection#ping sends `echo{i}`) is answered
// with an echo carrying the same `i`; a raw client's echo is answered the same way.
const { main, newRealtime, login, connectionOf, recordOutgoing, RawClient, params } = require('../lib');

main(async () => {
  const realtime = newRealtime();
  const tom = await login('tom', { realtime });
  const connection = await connectionOf(realtime);
  const sent = recordOutgoing(connection);
  const reply = await connection.ping(); // what the SDK runs every 180 s
  const sdkEcho = {
    sent: sent.filter(c => c.cmd === 'echo' || c.cmd === 14),
    reply: reply ? { cmd: reply.cmd, i: reply.i } : null,
    stillConnected: connection.is('connected'),
  };
  // the client keeps working after the heartbeat
  const online = await tom.ping(['tom']);

  const raw = new RawClient(params.noBinary === false ? 'lc.protobuf2.3' : 'lc.proto2base64.3');
  await raw.open();
  await raw.login('raw-user');
  const rawReplies = [];
  for (const i of [7, 8, 42]) {
    rawReplies.push(await raw.request({ cmd: 'echo', i }));
  }
  raw.close();
  return { sdkEcho, online, rawReplies, negotiated: raw.negotiated };
});
