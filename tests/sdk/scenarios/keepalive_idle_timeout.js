'use strict';
// With CHATROOM_IDLE_TIMEOUT=1, a socket that logs in and then sends nothing is closed
// with 4107 after about a second; a socket that keeps sending echo stays open.
const { main, RawClient, sleep } = require('../lib');

main(async () => {
  const silent = new RawClient();
  const chatty = new RawClient();
  // The chatty socket logs in and starts talking first; the silent socket's idle time
  // starts with its own login, so a slow login (on the other node of a cluster) is not
  // counted as idle time.
  await chatty.open();
  await chatty.login('chatty');
  let echoes = 0;
  let silentDone = false;
  const keepBusy = (async () => {
    while (!silentDone && !chatty.closeInfo) {
      await chatty.request({ cmd: 'echo' });
      echoes += 1;
      await sleep(250);
    }
  })();
  await silent.open();
  await silent.login('silent');
  const start = Date.now();
  const silentClose = await silent.waitClosed(4000);
  const silentAfterMs = Date.now() - start;
  // Chatty keeps talking past the silent socket's close by more than the timeout.
  await sleep(1500);
  silentDone = true;
  await keepBusy.catch(() => {});
  const chattyOpen = !chatty.closeInfo;
  const chattyClose = chatty.closeInfo;
  chatty.close();
  return { silentClose, silentAfterMs, chattyOpen, chattyClose, echoes };
});
