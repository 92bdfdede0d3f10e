"""``chatroom sys ...`` (system conversations) and ``chatroom sign ...`` (signatures
for testing a signing setup).

``sys create`` and ``sys send`` talk to the running server's admin endpoints
(chatroom/http/admin.py) with the master key, so the server's cache stays right. With
``--db`` instead, ``sys create`` writes the conversation straight into a database file;
do that only while no server has that file open (a running server would not see it
until its cache forgot the id, and could overwrite it).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import trio

from chatroom import config as config_module
from chatroom.config import Config
from chatroom.core import signature
from chatroom.core.clock import SystemClock
from chatroom.core.ids import ObjectIds, iso

COMMANDS = ("sys", "sign")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sys`` and ``sign`` on the main parser's subcommands."""
    system = commands.add_parser("sys", help="create or write to system conversations")
    actions = system.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a system conversation")
    create.add_argument("--name", required=True)
    create.add_argument("--attrs", default="{}", help="custom attributes, a JSON object")
    create.add_argument("--creator", default="system", help="its creator id (default system)")
    create.add_argument("--db", help="write into this database file (server stopped!)")
    send = actions.add_parser("send", help="send a text message to every subscriber")
    send.add_argument("cid")
    send.add_argument("text")
    send.add_argument("--from", dest="sender", help="sender id (default: the creator)")
    for sub in (create, send):
        sub.add_argument("--url", help="the server's HTTP base (default from the config)")
        _common(sub)
    sign = commands.add_parser("sign", help="print a signature, timestamp and nonce")
    sign.add_argument("kind", choices=["login", "conv", "add", "remove"])
    sign.add_argument("--client-id", required=True)
    sign.add_argument("--members", default="", help="comma list (conv, add, remove)")
    sign.add_argument("--cid", default="", help="conversation id (add, remove)")
    sign.add_argument("--action", help="add/remove action text (default invite/kick)")
    sign.add_argument("--app-id", help="default: app_id from the config")
    _common(sign)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--master-key", help="default: master_key from the config")


def run(args: argparse.Namespace) -> int:
    """Run ``sys`` or ``sign``; the exit status."""
    try:
        config = config_module.load(args.config)
    except (OSError, ValueError) as exc:
        print(f"chatroom: {exc}", file=sys.stderr)
        return 2
    master_key = args.master_key or config.master_key
    if args.command == "sign":
        return _sign(args, config, master_key)
    if args.action == "create" and args.db:
        return trio.run(_create_offline, args)
    if not master_key:
        print("chatroom: a master key is needed (--master-key or master_key)", file=sys.stderr)
        return 2
    base = args.url or f"http://{config.host}:{config.http_port}"
    if args.action == "create":
        attrs = json.loads(args.attrs)
        body = {"name": args.name, "attrs": attrs, "creator": args.creator}
        return _post(f"{base}/admin/system-conversations", body, master_key)
    body = {"text": args.text, **({"from": args.sender} if args.sender else {})}
    return _post(f"{base}/admin/system-conversations/{args.cid}/messages", body, master_key)


def _post(url: str, body: object, master_key: str) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-LC-Key": f"{master_key},master"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(f"chatroom: {exc.code} {exc.read().decode()}", file=sys.stderr)
    except OSError as exc:
        print(f"chatroom: {url}: {exc}", file=sys.stderr)
    return 1


async def _create_offline(args: argparse.Namespace) -> int:
    from chatroom.service.system import new_system_conversation
    from chatroom.store.factory import open_store  # the server's imports only when needed

    store = open_store(args.db)
    await store.open()
    try:
        now = SystemClock().wall_ms()
        attrs = json.loads(args.attrs)
        conv = new_system_conversation(ObjectIds().next(), args.name, attrs, args.creator, now)
        await store.create_conversation(conv)
    finally:
        await store.aclose()
    print(json.dumps({"objectId": conv.cid, "createdAt": iso(conv.created_at)}))
    return 0


def _sign(args: argparse.Namespace, config: Config, master_key: str) -> int:
    if not master_key:
        print("chatroom: a master key is needed (--master-key or master_key)", file=sys.stderr)
        return 2
    app_id = args.app_id if args.app_id is not None else config.app_id
    timestamp, nonce = int(time.time()), secrets.token_hex(8)
    members = [m for m in args.members.split(",") if m]
    if args.kind == "login":
        text = signature.login_text(app_id, args.client_id, timestamp, nonce)
    elif args.kind == "conv":
        text = signature.start_text(app_id, args.client_id, members, timestamp, nonce)
    else:
        action = args.action or ("invite" if args.kind == "add" else "kick")
        text = signature.members_text(
            app_id, args.client_id, args.cid, members, timestamp, nonce, action
        )
    result = {"signature": signature.sign(master_key, text), "timestamp": timestamp}
    print(json.dumps({**result, "nonce": nonce, "signed": text}))
    return 0
