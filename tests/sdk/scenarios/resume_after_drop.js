'use strict';
// Resume after a dropped connection: the socket dies abruptly (as when the network
// goes away); the SDK reconnects after ~1 s and re-opens the session with r:true and
// its session token; the server accepts it and the user can still send and receive.
const {
  main, login, newRealtime, connectionOf, recordOutgoing, waitFor, inbox, until, TextMessage, Event, collect, cacheConversation,
} = require('../lib');

main(async () => {
  const realtime = newRealtime();
  const tom = await login('tom', { realtime });
  const jerry = await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const tomInbox = inbox(tom);
  const jerryInbox = inbox(jerry);
  await conv.send(new TextMessage('before drop'));
  await until(() => jerryInbox.length >= 1, { label: 'jerry got before drop' });

  const connection = await connectionOf(realtime);
  const sent = recordOutgoing(connection);
  const events = [];
  [Event.DISCONNECT, Event.SCHEDULE, Event.RETRY, Event.RECONNECT, Event.RECONNECT_ERROR].forEach(name =>
    tom.on(name, (...payload) => events.push({ event: name, payload: payload.map(p => (p && p.code ? { code: p.code } : p)) }))
  );
  const reconnected = waitFor(tom, Event.RECONNECT, { timeout: 6000 });
  const dropAt = Date.now();
  connection._ws.terminate(); // abrupt drop: no close frame, no session/close
  await reconnected;
  const reconnectMs = Date.now() - dropAt;

  const jerryConv = await jerry.getConversation(conv.id);
  await jerryConv.send(new TextMessage('to tom after resume'));
  await until(() => tomInbox.length >= 1, { label: 'tom got message after resume' });
  const afterResume = await conv.send(new TextMessage('from tom after resume'));
  await until(() => jerryInbox.length >= 2, { label: 'jerry got message after resume' });
  const online = await jerry.ping(['tom']);
  const opens = sent.filter(c => c.cmd === 'session' && c.op === 'open');
  return {
    reconnectMs,
    events: events.map(e => e.event),
    opens: opens.map(c => ({ peerId: c.peerId, r: c.sessionMessage.r, hasSt: !!c.sessionMessage.st })),
    tomInbox: tomInbox.map(m => ({ text: m.text, from: m.from, cid: m.cid })),
    jerryInbox: jerryInbox.map(m => ({ text: m.text, from: m.from, id: m.id })),
    afterResumeId: afterResume.id,
    afterResumeStatus: afterResume.status.description,
    online,
  };
});
