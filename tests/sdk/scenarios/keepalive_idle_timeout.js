'use strict';
// With CHATROOM_IDLE_TIMEOUT=1, a socket that logs in and then sends nothing is closed
// with 4107 after about a second; a socket that keeps sending echo stays open.
const { main, RawClient, sleep } = require('../lib');

main(async () => {
  const silent = new RawClient();
  const chatty = new RawClient();
  await silent.open();
  await chatty.open();
  await silent.login('silent');
  await chatty.login('chatty');
  const start = Date.now();
  let echoes = 0;
  const keepBusy = (async () => {
    while (Date.now() - start < 2600 && !chatty.closeInfo) {
      await chatty.request({ cmd: 'echo' });
      echoes += 1;
      await sleep(250);
    }
  })();
  const silentClose = await silent.waitClosed(4000);
  const silentAfterMs = Date.now() - start;
  await keepBusy.catch(() => {});
  const chattyOpen = !chatty.closeInfo;
  const chattyClose = chatty.closeInfo;
  chatty.close();
  return { silentClose, silentAfterMs, chattyOpen, chattyClose, echoes };
});
