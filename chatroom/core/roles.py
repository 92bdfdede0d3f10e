"""Who may do what in a conversation: member roles and the permission matrix. Pure.

The creator of a conversation is its owner, for good: nobody can make anyone else
owner (the SDK refuses it itself with 5130), and the owner can be neither removed nor
demoted, nor quit. The owner makes members managers (``Role.MANAGER``) and members
again; owner and managers moderate (mute and block members, kick from a chatroom).
Whether plain members may add and remove other members is the ``member_changes_by``
setting: ``anyone`` (LeanCloud's open default) or ``managers``.

``may`` is the whole matrix; the README shows it as a table. ``Moderation`` is what a
conversation's moderation state looks like in memory (managers, mutes, blocks).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from chatroom.core.model import Conversation, ConvType
from chatroom.core.recent import RecentlyUsed


class Role(enum.StrEnum):
    """A member's role, spelled as on the wire (``ConvMemberInfo.role``)."""

    OWNER = "Owner"
    MANAGER = "Manager"
    MEMBER = "Member"


class MemberChanges(enum.StrEnum):
    """Who may add and remove other members (``Config.member_changes_by``)."""

    ANYONE = "anyone"  # every member, as LeanCloud by default
    MANAGERS = "managers"  # the owner and managers only


class Act(enum.Enum):
    """What a client asks to do to a conversation."""

    ADD_OTHERS = "add others"
    REMOVE_OTHERS = "remove others"
    SET_ROLE = "change roles"
    MODERATE = "mute or block members"
    QUERY_MODERATION = "list muted or blocked members"
    UPDATE = "change attributes"
    COUNT = "count members"
    SELF_MUTE = "turn its notifications off"


# Rank: a member may remove only those ranked below (or equal, for plain members when
# anyone may change members).
_RANK = {Role.OWNER: 2, Role.MANAGER: 1, Role.MEMBER: 0}


@dataclass(slots=True)
class Moderation:
    """One conversation's moderation state: its managers, its muted members (client id
    -> until when, epoch ms; None: until lifted) and its blocked members (client id ->
    since when, epoch ms)."""

    managers: set[str] = field(default_factory=set)
    muted: dict[str, int | None] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)

    def is_muted(self, peer: str, now_ms: int) -> bool:
        """Whether ``peer`` is muted at ``now_ms`` (a mute with a duration ends by itself)."""
        if peer not in self.muted:
            return False
        until = self.muted[peer]
        return until is None or until > now_ms

    def muted_ids(self, now_ms: int) -> list[str]:
        """The members muted at ``now_ms``, sorted."""
        return sorted(p for p in self.muted if self.is_muted(p, now_ms))


def role_of(
    conv: Conversation, moderation: Moderation, peer: str, watching: bool = False
) -> Role | None:
    """``peer``'s role in ``conv``; None for an outsider. A chatroom keeps no member
    list: its members are those ``watching`` it. Managers have their power while they
    are members (a manager removed and added again is a manager again). A system
    conversation has no owner: the operator runs it."""
    member = watching if conv.kind is ConvType.TRANSIENT else peer in conv.members
    if conv.kind is ConvType.SYSTEM:
        return Role.MEMBER if member else None
    if peer == conv.creator:
        return Role.OWNER
    if peer in moderation.managers and (member or conv.kind is ConvType.TRANSIENT):
        return Role.MANAGER
    return Role.MEMBER if member else None


def may(act: Act, kind: ConvType, role: Role | None, changes: MemberChanges) -> bool:
    """Whether a client of ``role`` (None: not a member) may do ``act`` in a
    conversation of ``kind``. Outsiders may do nothing here (joining oneself is not an
    act of this matrix); in a system conversation only the operator moderates."""
    if role is None:
        return False
    staff = role is not Role.MEMBER
    if kind is ConvType.SYSTEM:
        return act in (Act.COUNT, Act.SELF_MUTE)
    if act is Act.SET_ROLE:
        return role is Role.OWNER and kind is not ConvType.TEMPORARY
    if act in (Act.ADD_OTHERS, Act.REMOVE_OTHERS):
        if kind is ConvType.TRANSIENT:  # nobody is put into a chatroom; staff kick
            return staff and act is Act.REMOVE_OTHERS
        return staff or changes is MemberChanges.ANYONE
    if act is Act.MODERATE or (act is Act.UPDATE and kind is ConvType.TRANSIENT):
        return staff  # a viewer does not rename the room it watches
    return True  # QUERY_MODERATION, UPDATE, COUNT, SELF_MUTE: every member


def outranks(actor: Role, target: Role | None, changes: MemberChanges) -> bool:
    """Whether ``actor`` may remove (or mute, or block) a client of role ``target``
    (None: not a member): never the owner; managers only by the owner; plain members
    and outsiders by staff, and by plain members too when anyone may change members."""
    if target is None or target is Role.MEMBER:
        return actor is not Role.MEMBER or changes is MemberChanges.ANYONE
    return _RANK[actor] > _RANK[target]


@dataclass(slots=True)
class ModerationChanges:
    """One change to a conversation's moderation state (``Store.save_moderation``):
    ``roles`` sets a member's role (``Role.MEMBER`` forgets a manager), ``muted`` adds
    or replaces mutes, ``blocked`` adds blocks; ``unmuted``/``unblocked`` lift them."""

    roles: dict[str, Role] = field(default_factory=dict)
    muted: dict[str, int | None] = field(default_factory=dict)
    unmuted: list[str] = field(default_factory=list)
    blocked: dict[str, int] = field(default_factory=dict)
    unblocked: list[str] = field(default_factory=list)

    def apply(self, state: Moderation) -> None:
        """Make the same change to a state held in memory."""
        for peer, role in self.roles.items():
            if role is Role.MANAGER:
                state.managers.add(peer)
            else:
                state.managers.discard(peer)
        state.muted.update(self.muted)
        for peer in self.unmuted:
            state.muted.pop(peer, None)
        state.blocked.update(self.blocked)
        for peer in self.unblocked:
            state.blocked.pop(peer, None)


class ModerationBook(RecentlyUsed[Moderation]):
    """The moderation state of the conversations used lately, by cid (bounded: the
    least recently used is forgotten first and read from the store again when needed).
    Sending a message checks it, so it must not cost a store read each time."""
