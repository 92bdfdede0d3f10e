'use strict';
// History filtered by message type (`type` -> lctype): only images, only text.
const { main, login, TextMessage, ImageMessage, LocationMessage, MESSAGE_CLASSES } = require('../lib');

main(async () => {
  const tom = await login('tom', { register: MESSAGE_CLASSES });
  await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  const image = text => {
    const msg = new ImageMessage();
    msg.setText(text);
    msg._lcfile = { url: `https://example.invalid/${text}.png` };
    return msg;
  };
  const location = new LocationMessage();
  location._lcloc = { latitude: 1, longitude: 2 };
  location.setText('loc');
  for (const msg of [new TextMessage('t1'), image('img1'), new TextMessage('t2'), location, image('img2'), new TextMessage('t3')]) {
    await conv.send(msg);
  }
  const show = list => list.map(m => ({ class: m.constructor.name, type: m.type, text: m.text }));
  return {
    images: show(await conv.queryMessages({ type: ImageMessage.TYPE, limit: 10 })),
    texts: show(await conv.queryMessages({ type: TextMessage.TYPE, limit: 10 })),
    textsLimit2: show(await conv.queryMessages({ type: TextMessage.TYPE, limit: 2 })),
    locations: show(await conv.queryMessages({ type: LocationMessage.TYPE, limit: 10 })),
    audio: show(await conv.queryMessages({ type: -3, limit: 10 })),
    all: show(await conv.queryMessages({ limit: 10 })),
  };
});
