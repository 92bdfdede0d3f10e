'use strict';
// Will messages (features.md F42): tom sets two wills in two conversations, the last one
// counts; his socket dies abruptly and jerry gets that will at once (not stored in
// history). A will is not sent on a normal logout. With params.keepalive, a raw client
// that falls silent is cut by the server's idle timeout, which also sends its will.
const {
  main, login, newRealtime, connectionOf, inbox, until, TextMessage, cacheConversation, RawClient,
  sleep, params,
} = require('../lib');

main(async () => {
  if (params.keepalive) {
    // Both raw: with an idle timeout this short the SDK's own 180 s echo would not do.
    const jerry = new RawClient();
    await jerry.open();
    await jerry.login('jerry');
    const keepalive = setInterval(() => jerry.send({ cmd: 'echo' }), 200);
    const raw = new RawClient();
    await raw.open();
    await raw.login('tom');
    const started = await raw.request({ cmd: 'conv', op: 'start', convMessage: { m: ['jerry'] } });
    const cid = started.convMessage.cid;
    const ack = await raw.request({
      cmd: 'direct',
      directMessage: { cid, msg: 'tom timed out', will: true },
    });
    const silentAt = Date.now();
    const close = await raw.waitClosed(10000); // silent: no echo, no frames
    const will = await jerry.next(c => c.cmd === 'direct', 5000, 'will after idle timeout');
    clearInterval(keepalive);
    jerry.close();
    return {
      ackHasUid: Boolean(ack.ackMessage.uid),
      close,
      silentMs: Date.now() - silentAt,
      will: { cid: will.directMessage.cid, msg: will.directMessage.msg, from: will.directMessage.fromPeerId },
      cid,
    };
  }
  const jerry = await login('jerry');
  const got = inbox(jerry);
  const realtime = newRealtime();
  const tom = await login('tom', { realtime });
  const first = await tom.createConversation({ members: ['jerry'] });
  const second = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], first.id);
  await cacheConversation([jerry], second.id);
  const will1 = await first.send(new TextMessage('will one'), { will: true });
  const will2 = await second.send(new TextMessage('tom dropped'), { will: true });
  await sleep(200);
  const beforeDrop = got.length;
  const connection = await connectionOf(realtime);
  connection._ws.terminate();
  await until(() => got.length >= 1, { label: 'will delivered' });
  await sleep(300);
  const jerrySecond = await jerry.getConversation(second.id);
  const history = await jerrySecond.queryMessages({ limit: 10 });

  // a normal logout sends nothing
  const spike = await login('spike');
  const third = await spike.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], third.id);
  await third.send(new TextMessage('spike will'), { will: true });
  await spike.close();
  await sleep(500);
  return {
    willStatuses: [will1.status.description, will2.status.description],
    beforeDrop,
    got: got.map(m => ({ text: m.text, from: m.from, cid: m.cid })),
    secondId: second.id,
    history: history.map(m => m.text),
  };
});
