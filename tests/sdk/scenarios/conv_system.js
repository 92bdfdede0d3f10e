'use strict';
// A system conversation made by the operator (params.cid): the SDK finds it with
// getServiceConversationQuery(), subscribes, gets the operator's message (posted to the
// admin endpoint with the master key), writes to the operator (seed 002: stored in its
// thread, readable over the REST API, seen by no other subscriber), cannot change it
// (4308) and unsubscribes; then the operator kicks it over the REST API (4115).
const { main, login, waitFor, sleep, Event, TextMessage, outcome } = require('../lib');

main(async () => {
  const { cid, key } = require('../lib').params;
  const http = `http://${process.env.CHATROOM_HTTP}`;
  const master = { 'Content-Type': 'application/json', 'X-LC-Key': `${key},master` };
  const tom = await login('tom');
  const jerry = await login('jerry');
  const [service] = await tom.getServiceConversationQuery().find();
  const found = { id: service.id, cls: service.constructor.name, system: service.system, name: service.name };
  const subscribed = await outcome(service.subscribe());
  const [jerrys] = await jerry.getServiceConversationQuery().find();
  await jerrys.subscribe();
  const arrived = waitFor(tom, Event.MESSAGE);
  // Jerry gets the news too; on a cluster maybe after tom (another node): wait for it.
  const jerryArrived = waitFor(jerry, Event.MESSAGE);
  const response = await fetch(`${http}/admin/system-conversations/${cid}/messages`, {
    method: 'POST',
    headers: master,
    body: JSON.stringify({ text: 'news!' }),
  });
  const posted = await response.json();
  const [message] = await arrived;
  await jerryArrived;
  const seenByJerry = [];
  jerry.on(Event.MESSAGE, m => seenByJerry.push(m.text));
  const send = await outcome(service.send(new TextMessage('reply')));
  const thread = await (
    await fetch(`${http}/1.2/rtm/service-conversations/${cid}/subscribers/tom/messages`, { headers: master })
  ).json();
  const update = await outcome(service.set('name', 'mine').save());
  const unsubscribed = await outcome(service.unsubscribe());
  await sleep(100); // a reply pushed to jerry would have arrived
  const closed = waitFor(tom, Event.CLOSE);
  const kick = await fetch(`${http}/1.2/rtm/clients/tom/kick`, {
    method: 'POST',
    headers: master,
    body: JSON.stringify({ reason: 'bye' }),
  });
  const [close] = await closed;
  return {
    found,
    subscribed: subscribed.resolved,
    posted,
    message: { text: message.text, from: message.from, id: message.id, cid: message.cid },
    send: { resolved: send.resolved, id: send.resolved ? send.value.id : null },
    thread: thread.map(m => [m.from, m['msg-id'], JSON.parse(m.data)._lctext]),
    seenByJerry,
    update,
    unsubscribed: unsubscribed.resolved,
    kick: kick.status,
    close,
  };
});
