'use strict';
// signatureFactory / conversationSignatureFactory of the SDK against a server with
// login and conversation signatures on: good ones pass, a wrong key fails with
// 4102 / 4302. The factories compute HMAC-SHA1 with the master key (params.key) the
// way a developer's signing server would (features.md Appendix A.2).
const crypto = require('crypto');
const { main, newRealtime, outcome, withTimeout } = require('../lib');

/** Log in with the given IMClient options (the factories are IMClient options in 4.x). */
const signIn = (id, options) => withTimeout(newRealtime().createIMClient(id, options), 5000, `login ${id}`);

const APP = 'test-app';
const hmac = (key, text) => crypto.createHmac('sha1', key).update(text).digest('hex');
let counter = 0;
const nonce = () => `n${Date.now()}${counter++}`;

function factories(key) {
  return {
    signatureFactory: clientId => {
      const timestamp = Math.floor(Date.now() / 1000);
      const n = nonce();
      return { signature: hmac(key, `${APP}:${clientId}::${timestamp}:${n}`), timestamp, nonce: n };
    },
    conversationSignatureFactory: (conversationId, clientId, targetIds, action) => {
      const timestamp = Math.floor(Date.now() / 1000);
      const n = nonce();
      const sorted = targetIds.slice().sort().join(':');
      const text = conversationId
        ? `${APP}:${clientId}:${conversationId}:${sorted}:${timestamp}:${n}:${action}`
        : `${APP}:${clientId}:${sorted}:${timestamp}:${n}`;
      return { signature: hmac(key, text), timestamp, nonce: n };
    },
  };
}

main(async () => {
  const { key } = require('../lib').params;
  const good = await signIn('tom', factories(key));
  const conv = await good.createConversation({ members: ['jerry'], name: 'signed' });
  const added = await outcome(conv.add(['spike']));
  const removed = await outcome(conv.remove(['spike']));
  const spike = await signIn('spike', factories(key));
  const joined = await outcome((await spike.getConversation(conv.id)).join());
  const badLogin = await outcome(newRealtime().createIMClient('mallory', factories('wrong')));
  // logged in with a good login signature, but conversation signatures made with a wrong key
  const eve = await signIn('eve', {
    signatureFactory: factories(key).signatureFactory,
    conversationSignatureFactory: factories('wrong').conversationSignatureFactory,
  });
  const badCreate = await outcome(eve.createConversation({ members: ['tom'] }));
  const unsigned = await outcome(newRealtime().createIMClient('nobody'));
  return {
    cid: conv.id,
    members: conv.members.slice().sort(),
    added: added.resolved,
    removed: removed.resolved,
    joined: joined.resolved,
    badLogin,
    badCreate,
    unsigned,
  };
});
