'use strict';
// History with a direction and an interval: MessageQueryDirection.OLD_TO_NEW, and
// startTime/startMessageId/endTime/endMessageId with startClosed/endClosed.
const { main, login, TextMessage, sleep, MessageQueryDirection } = require('../lib');

main(async () => {
  const tom = await login('tom');
  await login('jerry');
  const conv = await tom.createConversation({ members: ['jerry'] });
  const m = [];
  for (let n = 0; n < 10; n += 1) {
    m.push(await conv.send(new TextMessage(`i${n}`)));
    await sleep(3); // distinct timestamps, so each bound is unambiguous
  }
  const texts = list => list.map(x => x.text);
  const at = k => ({ time: m[k].timestamp, id: m[k].id });
  const q = options => conv.queryMessages(options).then(texts);
  return {
    sent: m.map(x => ({ id: x.id, text: x.text, timestamp: x.timestamp.getTime() })),
    oldToNew3: await q({ limit: 3, direction: MessageQueryDirection.OLD_TO_NEW }),
    newToOld3: await q({ limit: 3, direction: MessageQueryDirection.NEW_TO_OLD }),
    // from i7 towards older, bounded by i2 (direction inferred: endTime < startTime)
    open7to2: await q({ startTime: at(7).time, startMessageId: at(7).id, endTime: at(2).time, endMessageId: at(2).id }),
    closed7to2: await q({
      startTime: at(7).time, startMessageId: at(7).id, startClosed: true,
      endTime: at(2).time, endMessageId: at(2).id, endClosed: true,
    }),
    // from i2 towards newer, bounded by i7 (direction inferred: endTime > startTime)
    open2to7: await q({ startTime: at(2).time, startMessageId: at(2).id, endTime: at(7).time, endMessageId: at(7).id }),
    closed2to7: await q({
      startTime: at(2).time, startMessageId: at(2).id, startClosed: true,
      endTime: at(7).time, endMessageId: at(7).id, endClosed: true,
    }),
    // a start point and a limit, each direction
    before7limit2: await q({ startTime: at(7).time, startMessageId: at(7).id, limit: 2 }),
    before7closedLimit2: await q({ startTime: at(7).time, startMessageId: at(7).id, startClosed: true, limit: 2 }),
    after2limit2: await q({ startTime: at(2).time, startMessageId: at(2).id, limit: 2, direction: MessageQueryDirection.OLD_TO_NEW }),
    // by time only
    afterTime4: await q({ startTime: at(4).time, direction: MessageQueryDirection.OLD_TO_NEW, limit: 100 }),
    beforeTime4: await q({ startTime: at(4).time, limit: 100 }),
    // an explicit direction with an end bound
    newToOldUntil5: await q({ endTime: at(5).time, endMessageId: at(5).id, direction: MessageQueryDirection.NEW_TO_OLD, limit: 100 }),
  };
});
