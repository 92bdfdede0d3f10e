'use strict';
// An unknown session token on resume: the server answers the r:true open with
// cmd:error 4112; the SDK drops the token, re-opens with r:true and no token, and the
// server accepts that. Driven through the SDK (its token replaced by a bogus one
// before the drop) and checked on the wire with a raw client.
const {
  main, login, newRealtime, connectionOf, recordOutgoing, waitFor, inbox, until, TextMessage, Event, RawClient, params, cacheConversation,
} = require('../lib');

main(async () => {
  const realtime = newRealtime();
  const tom = await login('tom', { realtime });
  const jerry = await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);
  const tomInbox = inbox(tom);
  const jerryInbox = inbox(jerry);

  const connection = await connectionOf(realtime);
  const sent = recordOutgoing(connection);
  // What a restarted server would see: a token it never issued.
  tom._sessionManager.setSessionToken('bogus-token-from-before-a-restart', 3600);
  const reconnectErrors = [];
  tom.on(Event.RECONNECT_ERROR, error => reconnectErrors.push({ code: error.code, message: error.message }));
  const reconnected = waitFor(tom, Event.RECONNECT, { timeout: 6000 });
  connection._ws.terminate();
  await reconnected;
  const opens = sent
    .filter(c => c.cmd === 'session' && c.op === 'open')
    .map(c => ({ r: c.sessionMessage.r, st: c.sessionMessage.st || null }));

  const jerryConv = await jerry.getConversation(conv.id);
  await jerryConv.send(new TextMessage('after 4112'));
  await until(() => tomInbox.length >= 1, { label: 'tom got message after re-open' });
  await conv.send(new TextMessage('tom after 4112'));
  await until(() => jerryInbox.length >= 1, { label: 'jerry got message after re-open' });

  // The same flow on the wire.
  const raw = new RawClient(params.noBinary === false ? 'lc.protobuf2.3' : 'lc.proto2base64.3');
  await raw.open();
  const bogus = await raw.login('tom', { r: true, st: 'never-issued' });
  const withoutToken = await raw.login('tom', { r: true });
  raw.close();
  return {
    opens,
    reconnectErrors,
    tomInbox: tomInbox.map(m => m.text),
    jerryInbox: jerryInbox.map(m => m.text),
    tomNewToken: tom._sessionManager ? await tom._sessionManager.getSessionToken({ autoRefresh: false }) : null,
    raw: { bogus, withoutToken },
  };
});
