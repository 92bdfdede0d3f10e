'use strict';
// A resend with the same dt (what the SDK does when an app re-sends a failed message)
// gets the same ack (uid, t), is delivered once and stored once.
const { main, RawClient, sleep, params } = require('../lib');

main(async () => {
  const protocol = params.noBinary === false ? 'lc.protobuf2.3' : 'lc.proto2base64.3';
  const tom = new RawClient(protocol);
  const jerry = new RawClient(protocol);
  await tom.open();
  await jerry.open();
  await tom.login('tom');
  await jerry.login('jerry');
  const started = await tom.request({ cmd: 'conv', op: 'start', convMessage: { m: ['jerry', 'tom'], attr: { data: '{}' } } });
  const cid = started.convMessage.cid;
  const dt = 'b1f0c6de-0000-4000-8000-000000000001';
  const direct = { cmd: 'direct', directMessage: { msg: '{"_lctype":-1,"_lctext":"maybe lost"}', cid, dt, mentionAll: false } };
  const first = await tom.request(direct);
  const second = await tom.request(direct);
  await sleep(100);
  const third = await tom.request(direct); // later still the same
  const other = await tom.request({
    cmd: 'direct',
    directMessage: { msg: '{"_lctype":-1,"_lctext":"another"}', cid, dt: 'b1f0c6de-0000-4000-8000-000000000002', mentionAll: false },
  });
  await sleep(400);
  const delivered = jerry.inbox.filter(c => c.cmd === 'direct');
  const logs = await tom.request({ cmd: 'logs', logsMessage: { cid, l: 10 } });
  tom.close();
  jerry.close();
  return { cid, first, second, third, other, delivered, logs };
});
