'use strict';
// With allow_edit and allow_recall off, the SDK's update() fails with 4406 and
// recall() with 4407.
const { main, login, TextMessage, outcome } = require('../lib');

main(async () => {
  const tom = await login('tom');
  const conv = await tom.createConversation({ members: ['jerry'] });
  const sent = await conv.send(new TextMessage('permanent'));
  const edit = await outcome(conv.update(sent, new TextMessage('changed')));
  const recall = await outcome(conv.recall(sent));
  return { edit: edit.error && edit.error.code, recall: recall.error && recall.error.code };
});
