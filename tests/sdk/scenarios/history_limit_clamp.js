'use strict';
// History limits over the maximum (100): after 105 messages, a query with limit 5000 (and
// one with exactly 100) shows what the server does with the maximum.
const { main, login, outcome, RawClient, params } = require('../lib');

main(async () => {
  const tom = await login('tom');
  await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  // fill quickly through a raw client (pipelined), as tom on a second socket
  const raw = new RawClient(params.noBinary === false ? 'lc.protobuf2.3' : 'lc.proto2base64.3');
  await raw.open();
  await raw.login('tom', { tag: 'filler' });
  const total = 105;
  const acks = [];
  for (let start = 0; start < total; start += 200) {
    const batch = [];
    for (let n = start; n < Math.min(total, start + 200); n += 1) {
      batch.push(raw.request({ cmd: 'direct', directMessage: { msg: JSON.stringify({ _lctype: -1, _lctext: `f${n}` }), cid: conv.id, dt: `fill-${n}`, mentionAll: false } }, 10000));
    }
    acks.push(...(await Promise.all(batch)));
  }
  raw.close();
  const failedAcks = acks.filter(a => a.cmd !== 'ack' || a.ackMessage.code !== undefined).length;
  const summarize = async options => {
    const result = await outcome(conv.queryMessages(options), 10000, `queryMessages ${JSON.stringify(options)}`);
    if (!result.resolved) return result;
    const list = result.value;
    return { resolved: true, count: list.length, first: list.length ? list[0].text : null, last: list.length ? list[list.length - 1].text : null };
  };
  return {
    total,
    failedAcks,
    limit100: await summarize({ limit: 100 }),
    limit101: await summarize({ limit: 101 }),
    limit5000: await summarize({ limit: 5000 }),
  };
}, { deadline: 55000 });
