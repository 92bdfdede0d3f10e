"""``chatroom backup PATH``: a consistent copy of the SQLite store, taken while the
server runs (chatroom/store/sqlite_backup.py). README shows how to restore it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chatroom import config as config_module
from chatroom.store.base import StoreError
from chatroom.store.sqlite_backup import backup

COMMANDS = ("backup",)


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "backup",
        help="copy the SQLite store while the server runs",
        description="Write a consistent copy of the SQLite store to PATH (which must not "
        "exist). The server keeps serving meanwhile; the copy holds every message "
        "acknowledged before it began.",
    )
    parser.add_argument("path", type=Path, help="where to write the copy")
    parser.add_argument("--db", help="the SQLite file (default: db from the config)")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument(
        "--pages", type=int, default=1024, help="pages copied per step (default 1024)"
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds between steps, to spare the disk a busy server uses (default 0)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_module.load(args.config, {"db": args.db})
        if config.db == ":memory:":
            raise ValueError("an in-memory store has nothing to back up")
        pages = backup(
            config.db, str(args.path), pages=max(1, args.pages), pause=max(0.0, args.pause)
        )
    except (OSError, ValueError, StoreError) as exc:
        print(f"chatroom backup: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {config.db} to {args.path} ({pages} pages)")
    return 0
