'use strict';
// Member info as the official SDK fetches it (issue 12): getAllMemberInfo() and
// getMemberInfo() call GET /1.1/classes/_ConversationMemberInfo on the API server (the
// `server` option) with the client's IM session token, always over https. The SDK
// updates the info objects it handed out when a role changes, so each is read at once.
const { main, login, waitFor, Event } = require('../lib');

const ConversationMemberRole = require('leancloud-realtime').ConversationMemberRole;

const shown = infos => infos.map(info => info.toJSON()).sort((a, b) => (a.memberId < b.memberId ? -1 : 1));

main(async () => {
  const owner = await login('owner');
  const member = await login('member');
  const ownerConv = await owner.createConversation({ members: [member.id, 'other'], name: 'group' });
  const memberConv = await member.getConversation(ownerConv.id);
  const promoted = waitFor(memberConv, Event.MEMBER_INFO_UPDATED);
  await ownerConv.updateMemberRole(member.id, ConversationMemberRole.MANAGER);
  await promoted;
  const all = shown(await memberConv.getAllMemberInfo({ noCache: true }));
  const one = (await memberConv.getMemberInfo(member.id)).toJSON();
  const demoted = waitFor(memberConv, Event.MEMBER_INFO_UPDATED);
  await ownerConv.updateMemberRole(member.id, ConversationMemberRole.MEMBER);
  await demoted;
  const after = shown(await memberConv.getAllMemberInfo({ noCache: true }));
  const stranger = await login('stranger');
  const refused = await stranger
    ._requestWithSessionToken({ method: 'GET', path: '/classes/_ConversationMemberInfo', query: { where: { cid: ownerConv.id } } })
    .then(() => null, error => ({ code: error.code }));
  return { cid: ownerConv.id, all, one, after, refused };
});
