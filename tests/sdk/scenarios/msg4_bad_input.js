'use strict';
// Bad input for the messaging commands, from a raw client (what the SDK cannot send):
// patches without content or for unknown conversations, read/ack/max_read of a
// conversation one is not in, acks of unknown messages. The server answers each with an
// error and keeps serving.
const { main, RawClient } = require('../lib');

main(async () => {
  const tom = new RawClient();
  await tom.open();
  await tom.login('tom');
  const eve = new RawClient('lc.json.3');
  await eve.open();
  await eve.login('eve');
  const started = await tom.request({ cmd: 'conv', op: 'start', convMessage: { m: ['jerry'] } });
  const cid = started.convMessage.cid;
  const ack = await tom.request({ cmd: 'direct', directMessage: { cid, msg: 'hi' } });
  const patch = item => tom.request({ cmd: 'patch', op: 'modify', patchMessage: { patches: [item] } });
  const code = reply => (reply.errorMessage ? reply.errorMessage.code : reply.code || null);
  const out = {
    noContent: code(await patch({ cid, mid: ack.ackMessage.uid, timestamp: ack.ackMessage.t })),
    bothContents: code(await patch({ cid, mid: ack.ackMessage.uid, data: 'x', binaryMsg: 'eA==' })),
    unknownConv: code(await patch({ cid: 'nope', mid: ack.ackMessage.uid, data: 'x' })),
    unknownMessage: code(await patch({ cid, mid: 'nope', data: 'x' })),
    noPatches: code(await tom.request({ cmd: 'patch', op: 'modify', patchMessage: {} })),
    maxReadForeign: code(await eve.request({ cmd: 'conv', op: 'max_read', cid })),
    maxReadMissing: code(await eve.request({ cmd: 'conv', op: 'max_read', cid: 'nope' })),
  };
  eve.send({ cmd: 'read', cid });
  out.readForeign = code(await eve.next(c => c.cmd === 'error'));
  eve.send({ cmd: 'read' });
  out.readNothing = code(await eve.next(c => c.cmd === 'error'));
  eve.send({ cmd: 'ack', cid, mid: 'nope' });
  out.ackForeign = code(await eve.next(c => c.cmd === 'error'));
  tom.send({ cmd: 'ack', ackMessage: { cid, mid: 'nope' } }); // protobuf: no error push
  const echo = await tom.request({ cmd: 'echo' });
  out.stillServing = echo.cmd;
  const logs = await tom.request({ cmd: 'logs', logsMessage: { cid } });
  out.history = logs.logsMessage.logs.map(l => l.data);
  tom.close();
  eve.close();
  return out;
});
