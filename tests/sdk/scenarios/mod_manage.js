'use strict';
// Moderation as the official SDK drives it (issue 12), after the SDK's own
// "Conversation Management" tests: roles, the owner who cannot quit or be removed,
// muting members (in a group and in a chatroom) and the blacklist, with the events
// each side sees.
const { main, login, waitFor, Event, TextMessage, outcome } = require('../lib');

const ConversationMemberRole = require('leancloud-realtime').ConversationMemberRole;

const failureInfo = result => ({
  ok: result.successfulClientIds,
  failed: result.failures.map(f => ({ code: f.code, message: f.message, ids: f.clientIds })),
});

async function roles(ownerConv, memberConv, member) {
  return {
    selfPromotion: await outcome(memberConv.updateMemberRole(member.id, ConversationMemberRole.MANAGER)),
    ownerPromotion: await outcome(ownerConv.updateMemberRole(member.id, ConversationMemberRole.OWNER)),
    quit: await outcome(ownerConv.quit()),
  };
}

async function mute(ownerConv, memberConv, owner, member) {
  const mutedEvent = waitFor(memberConv, Event.MUTED);
  const membersMutedEvent = waitFor(ownerConv, Event.MEMBERS_MUTED);
  const muted = failureInfo(await ownerConv.muteMembers(member.id));
  const [membersMuted] = await membersMutedEvent;
  const [mutedPayload] = await mutedEvent;
  const query = await memberConv.queryMutedMembers();
  const send = await outcome(memberConv.send(new TextMessage('let me speak')));
  const selfUnmute = await outcome(memberConv.unmuteMembers(member.id));
  const unmutedEvent = waitFor(memberConv, Event.MEMBERS_UNMUTED);
  await ownerConv.unmuteMembers(member.id);
  const [membersUnmuted] = await unmutedEvent;
  const sendAfter = await outcome(memberConv.send(new TextMessage('thanks')));
  return { muted, membersMuted, mutedPayload, query, send, selfUnmute, membersUnmuted, sendAfter: sendAfter.resolved };
}

async function block(ownerConv, memberConv, member) {
  const blockedEvent = waitFor(memberConv, Event.BLOCKED);
  const kickedEvent = waitFor(memberConv, Event.KICKED);
  const membersBlockedEvent = waitFor(ownerConv, Event.MEMBERS_BLOCKED);
  const membersLeftEvent = waitFor(ownerConv, Event.MEMBERS_LEFT);
  const blocked = failureInfo(await ownerConv.blockMembers(member.id));
  const [[membersBlocked], [blockedPayload], [kicked], [membersLeft]] = await Promise.all([
    membersBlockedEvent, blockedEvent, kickedEvent, membersLeftEvent,
  ]);
  const query = await ownerConv.queryBlockedMembers();
  const rejoin = await outcome(memberConv.join());
  const selfUnblock = await outcome(memberConv.unblockMembers(member.id));
  const unblockedEvent = waitFor(ownerConv, Event.MEMBERS_UNBLOCKED);
  await ownerConv.unblockMembers(member.id);
  const [membersUnblocked] = await unblockedEvent;
  const joinedEvent = waitFor(ownerConv, Event.MEMBERS_JOINED);
  const rejoinAfter = await outcome(memberConv.join());
  await joinedEvent;
  return {
    blocked, membersBlocked, blockedPayload, kicked, membersLeft, query, rejoin, selfUnblock,
    membersUnblocked, rejoinAfter: rejoinAfter.resolved, members: ownerConv.members.slice().sort(),
  };
}

async function chatroomMute(owner, viewer) {
  const room = await owner.createChatRoom({ name: 'live' });
  const viewerRoom = await viewer.getConversation(room.id);
  await viewerRoom.join();
  const mutedEvent = waitFor(viewerRoom, Event.MUTED);
  const muted = failureInfo(await room.muteMembers(viewer.id));
  await mutedEvent;
  const send = await outcome(viewerRoom.send(new TextMessage('spam')));
  const kick = await outcome(viewerRoom.remove(owner.id));
  return { muted, send, kick: kick.resolved ? failureInfo(kick.value) : kick };
}

main(async () => {
  const owner = await login('owner');
  const member = await login('member');
  const ownerConv = await owner.createConversation({ members: [member.id, 'other'], name: 'group' });
  const memberConv = await member.getConversation(ownerConv.id);
  const roleResults = await roles(ownerConv, memberConv, member);
  const partial = failureInfo(await ownerConv.remove([owner.id, 'other']));
  const promoted = await outcome(ownerConv.updateMemberRole(member.id, ConversationMemberRole.MANAGER));
  await ownerConv.updateMemberRole(member.id, ConversationMemberRole.MEMBER);
  return {
    roles: { ...roleResults, promoted: promoted.resolved },
    partial,
    mute: await mute(ownerConv, memberConv, owner, member),
    block: await block(ownerConv, memberConv, member),
    chatroom: await chatroomMute(owner, member),
  };
});
