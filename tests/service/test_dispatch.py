"""Which handler a command gets (chatroom/service/dispatch.py)."""

from __future__ import annotations

from chatroom.protocol import messages_pb2 as pb
from chatroom.service import dispatch


def _by_the_tables(command: int, op: int | None) -> object:
    """The rule the two tables state: a sync handler for the (cmd, op), then one for
    any op of the cmd, then the same of the async handlers; else unsupported."""
    for table in (dispatch.SYNC_HANDLERS, dispatch.HANDLERS):
        found = table.get((command, op)) or table.get((command, None))
        if found is not None:
            return found
    return dispatch.unsupported


def test_every_command_and_op_gets_the_handler_the_tables_give_it() -> None:
    ops: list[int | None] = [None, *pb.OpType.values(), 999]
    for command in pb.CommandType.values():
        for op in ops:
            cmd = pb.GenericCommand(cmd=command)
            if op is not None and op in pb.OpType.values():
                cmd.op = op  # type: ignore[assignment]
            elif op is not None:
                continue  # an unknown op number parses as absent
            sync, handler = dispatch.route(cmd, None)
            assert (sync, handler).count(None) == 1
            assert (sync or handler) is _by_the_tables(command, op), (command, op)


def test_a_command_without_cmd_or_with_a_control_character_gets_a_refusal() -> None:
    assert dispatch.route(pb.GenericCommand(), None) == (dispatch.unsupported, None)
    cmd = pb.GenericCommand(cmd=pb.session, op=pb.open)
    assert dispatch.route(cmd, "peerId") == (dispatch.refuse_ids, None)
