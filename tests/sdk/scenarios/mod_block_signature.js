'use strict';
// blacklistSignatureFactory of the SDK against a server with blacklist signatures on:
// blockMembers/unblockMembers signed with the master key (params.key) pass; signed with
// a wrong key, or not signed, they fail with 4546 and block no one.
const crypto = require('crypto');
const { main, newRealtime, outcome, withTimeout } = require('../lib');

const APP = 'test-app';
const hmac = (key, text) => crypto.createHmac('sha1', key).update(text).digest('hex');
let counter = 0;

/** What a developer's signing server computes for the SDK's blacklist factory. */
const blacklistSigner = key => (clientId, conversationId, targetIds, action) => {
  const timestamp = Math.floor(Date.now() / 1000);
  const nonce = `n${Date.now()}${counter++}`;
  const sorted = targetIds.slice().sort().join(':');
  const text = `${APP}:${clientId}:${conversationId}:${sorted}:${timestamp}:${nonce}:${action}`;
  return { signature: hmac(key, text), timestamp, nonce };
};

const signIn = (id, options = {}) =>
  withTimeout(newRealtime().createIMClient(id, options), 5000, `login ${id}`);

main(async () => {
  const { key } = require('../lib').params;
  const tom = await signIn('tom', { blacklistSignatureFactory: blacklistSigner(key) });
  const conv = await tom.createConversation({ members: ['jerry', 'spike'], name: 'signed' });
  const blocked = await outcome(conv.blockMembers(['spike', 'jerry']));
  const unblocked = await outcome(conv.unblockMembers(['jerry']));
  const ann = await signIn('ann', { blacklistSignatureFactory: blacklistSigner('wrong') });
  const annConv = await ann.createConversation({ members: ['spike'] });
  const badBlock = await outcome(annConv.blockMembers(['spike']));
  const bob = await signIn('bob');
  const bobConv = await bob.createConversation({ members: ['spike'] });
  const unsigned = await outcome(bobConv.blockMembers(['spike']));
  const stillThere = (await bobConv.fetch()).members.slice().sort();
  return {
    blocked: blocked.resolved,
    unblocked: unblocked.resolved,
    query: (await conv.queryBlockedMembers()).results,
    badBlock,
    unsigned,
    stillThere,
  };
});
