'use strict';
// A system conversation made by the operator (params.cid): the SDK finds it with
// getServiceConversationQuery(), subscribes, gets the operator's message (posted to the
// admin endpoint with the master key), cannot send (4307) and unsubscribes.
const { main, login, until, waitFor, Event, TextMessage, outcome } = require('../lib');

main(async () => {
  const { cid, key } = require('../lib').params;
  const tom = await login('tom');
  const [service] = await tom.getServiceConversationQuery().find();
  const found = { id: service.id, cls: service.constructor.name, system: service.system, name: service.name };
  const subscribed = await outcome(service.subscribe());
  const arrived = waitFor(tom, Event.MESSAGE);
  const response = await fetch(`http://${process.env.CHATROOM_HTTP}/admin/system-conversations/${cid}/messages`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-LC-Key': `${key},master` },
    body: JSON.stringify({ text: 'news!' }),
  });
  const posted = await response.json();
  const [message] = await arrived;
  const send = await outcome(service.send(new TextMessage('reply')));
  const update = await outcome(service.set('name', 'mine').save());
  const unsubscribed = await outcome(service.unsubscribe());
  return {
    found,
    subscribed: subscribed.resolved,
    posted,
    message: { text: message.text, from: message.from, id: message.id, cid: message.cid },
    send,
    update,
    unsubscribed: unsubscribed.resolved,
  };
});
