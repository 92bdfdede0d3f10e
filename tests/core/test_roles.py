"""The permission matrix of chatroom/core/roles.py, checked cell by cell (pure)."""

from __future__ import annotations

import pytest

from chatroom.core.model import Conversation, ConvType
from chatroom.core.roles import (
    Act,
    MemberChanges,
    Moderation,
    ModerationBook,
    ModerationChanges,
    Role,
    may,
    outranks,
    role_of,
)

OW, MG, ME, NO = Role.OWNER, Role.MANAGER, Role.MEMBER, None
ANY, MGR = MemberChanges.ANYONE, MemberChanges.MANAGERS
NORMAL, ROOM, SYSTEM, TEMP = (
    ConvType.NORMAL,
    ConvType.TRANSIENT,
    ConvType.SYSTEM,
    ConvType.TEMPORARY,
)

# (act, kind, member_changes_by) -> the roles that may, of owner, manager, member, outsider
MATRIX = {
    (Act.ADD_OTHERS, NORMAL, ANY): {OW, MG, ME},
    (Act.ADD_OTHERS, NORMAL, MGR): {OW, MG},
    (Act.REMOVE_OTHERS, NORMAL, ANY): {OW, MG, ME},
    (Act.REMOVE_OTHERS, NORMAL, MGR): {OW, MG},
    (Act.REMOVE_OTHERS, TEMP, MGR): {OW, MG},
    (Act.ADD_OTHERS, ROOM, ANY): set(),
    (Act.REMOVE_OTHERS, ROOM, ANY): {OW, MG},
    (Act.SET_ROLE, NORMAL, ANY): {OW},
    (Act.SET_ROLE, ROOM, ANY): {OW},
    (Act.SET_ROLE, TEMP, ANY): set(),
    (Act.MODERATE, NORMAL, ANY): {OW, MG},
    (Act.MODERATE, ROOM, ANY): {OW, MG},
    (Act.MODERATE, SYSTEM, ANY): set(),
    (Act.UPDATE, NORMAL, ANY): {OW, MG, ME},
    (Act.UPDATE, ROOM, ANY): {OW, MG},
    (Act.UPDATE, SYSTEM, ANY): set(),
    (Act.QUERY_MODERATION, NORMAL, ANY): {OW, MG, ME},
    (Act.COUNT, SYSTEM, ANY): {OW, MG, ME},  # owners and managers never occur there
    (Act.SELF_MUTE, ROOM, ANY): {OW, MG, ME},
}


@pytest.mark.parametrize(("cell", "allowed"), MATRIX.items(), ids=str)
def test_matrix(cell: tuple[Act, ConvType, MemberChanges], allowed: set[Role]) -> None:
    act, kind, changes = cell
    for role in (OW, MG, ME, NO):
        assert may(act, kind, role, changes) == (role in allowed), role


def test_nobody_outranks_the_owner_and_only_the_owner_outranks_managers() -> None:
    for changes in (ANY, MGR):
        assert not any(outranks(r, OW, changes) for r in (OW, MG, ME))
        assert [outranks(r, MG, changes) for r in (OW, MG, ME)] == [True, False, False]
    assert [outranks(r, ME, ANY) for r in (OW, MG, ME)] == [True, True, True]
    assert [outranks(r, ME, MGR) for r in (OW, MG, ME)] == [True, True, False]
    assert outranks(MG, NO, MGR)
    assert not outranks(ME, NO, MGR)


def _conv(kind: ConvType, members: list[str]) -> Conversation:
    return Conversation("c", kind, "owner", members, {}, 0, 0)


def test_roles_of_members_managers_and_outsiders() -> None:
    state = Moderation(managers={"mgr", "gone"})
    conv = _conv(NORMAL, ["owner", "mgr", "plain"])
    roles = [role_of(conv, state, p) for p in ("owner", "mgr", "plain", "gone", "x")]
    assert roles == [OW, MG, ME, NO, NO]  # a manager removed has no power while out
    room = _conv(ROOM, [])
    assert role_of(room, state, "gone") is MG  # chatroom staff need not watch
    assert (role_of(room, state, "x"), role_of(room, state, "x", watching=True)) == (NO, ME)
    system = _conv(SYSTEM, ["owner"])
    assert (role_of(system, state, "owner"), role_of(system, state, "x")) == (ME, NO)


def test_mutes_end_by_themselves_and_changes_apply() -> None:
    state = Moderation(muted={"a": None, "b": 100})
    assert (state.is_muted("a", 10**15), state.is_muted("b", 99), state.is_muted("b", 100)) == (
        True,
        True,
        False,
    )
    assert state.muted_ids(100) == ["a"]
    ModerationChanges(
        roles={"m": Role.MANAGER}, muted={"c": None}, unmuted=["a"], blocked={"z": 5}
    ).apply(state)
    assert (state.managers, state.muted, state.blocked) == ({"m"}, {"b": 100, "c": None}, {"z": 5})
    ModerationChanges(roles={"m": Role.MEMBER}, unblocked=["z"]).apply(state)
    assert (state.managers, state.blocked) == (set(), {})


def test_the_book_is_bounded_and_keeps_the_first_of_concurrent_loads() -> None:
    book = ModerationBook(2)
    first = book.keep("a", Moderation())
    assert book.keep("a", Moderation(managers={"x"})) is first
    book.keep("b", Moderation())
    book.get("a")
    book.keep("c", Moderation())
    assert (book.get("a") is first, book.get("b")) == (True, None)
