'use strict';
// A clientId longer than 64 characters is rejected (4103); 64 characters are fine.
const { main, newRealtime, outcome } = require('../lib');

main(async () => {
  const tooLong = 'x'.repeat(65);
  const longest = 'y'.repeat(64);
  const rejected = await outcome(newRealtime().createIMClient(tooLong), 5000, 'createIMClient(65)');
  const accepted = await outcome(newRealtime().createIMClient(longest), 5000, 'createIMClient(64)');
  return {
    rejected: { resolved: rejected.resolved, error: rejected.error || null, timeout: !!rejected.timeout },
    accepted: { resolved: accepted.resolved, id: accepted.resolved ? accepted.value.id : null, error: accepted.error || null },
  };
});
