'use strict';
// Rich-media typed messages: an image (_lctype -2, _lcfile), a location (-5, _lcloc),
// each with _lcattrs; the receiver gets instances of the registered classes with the
// same fields, and history returns the same content.
const { main, login, inbox, until, ImageMessage, LocationMessage, MESSAGE_CLASSES, cacheConversation } = require('../lib');

main(async () => {
  const tom = await login('tom', { register: MESSAGE_CLASSES });
  const jerry = await login('jerry', { register: MESSAGE_CLASSES });
  const jerryInbox = inbox(jerry);
  const conv = await tom.createConversation({ members: ['jerry'] });
  await cacheConversation([jerry], conv.id);

  const image = new ImageMessage();
  image.setText('a cat');
  image.setAttributes({ album: 'pets' });
  image._lcfile = {
    url: 'https://example.invalid/cat.png',
    objId: '5c1234',
    metaData: { name: 'cat.png', format: 'png', height: 480, width: 640, size: 12345 },
  };
  const location = new LocationMessage();
  location.setText('here');
  location._lcloc = { latitude: 39.9, longitude: 116.4 };
  location.setAttributes({ place: 'Beijing' });

  const sentImage = await conv.send(image);
  const sentLocation = await conv.send(location);
  await until(() => jerryInbox.length >= 2, { label: 'jerry received both' });
  const history = await conv.queryMessages({ limit: 10 });
  const jerryConv = await jerry.getConversation(conv.id);
  const jerryHistory = await jerryConv.queryMessages({ limit: 10 });
  const show = m => ({
    id: m.id,
    class: m.constructor.name,
    type: m.type,
    text: m.text,
    attributes: m.attributes,
    file: m._lcfile === undefined ? null : m._lcfile,
    loc: m._lcloc === undefined ? null : m._lcloc,
  });
  return {
    sent: [sentImage.id, sentLocation.id],
    received: jerryInbox,
    history: history.map(show),
    jerryHistory: jerryHistory.map(show),
  };
});
