'use strict';
// Offline push (features.md F47): jerry is offline, spike muted the conversation; a
// message with pushData and one without go to the operator's webhook (started by the
// test) for jerry only. A transient message causes no push.
const { main, login, TextMessage } = require('../lib');

main(async () => {
  const spike = await login('spike');
  const tom = await login('tom');
  const conv = await tom.createConversation({ members: ['jerry', 'spike'] });
  const spikeConv = await spike.getConversation(conv.id);
  await spikeConv.mute();
  await spike.close();
  const withData = await conv.send(new TextMessage('hi'), {
    pushData: { alert: '您有一条未读的消息', badge: 1 },
  });
  const templated = await conv.send(new TextMessage('again'));
  await conv.send(new TextMessage('typing'), { transient: true });
  return { cid: conv.id, ids: [withData.id, templated.id] };
});
