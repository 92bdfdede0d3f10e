"""``chatroom serve`` and friends."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

import trio

import chatroom
from chatroom import config as config_module
from chatroom.cli import backup as backup_cli
from chatroom.cli import sys_commands as admin_cli
from chatroom.cli import workers
from chatroom.net.tls import Certificates
from chatroom.store.base import StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatroom",
        description="A real-time messaging server that speaks LeanCloud's IM protocol.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the server until SIGINT/SIGTERM. Every option can also be set "
        "as CHATROOM_<NAME> in the environment (e.g. CHATROOM_PORT) or in a TOML file; "
        "the command line wins, then the environment, then the file.",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="WebSocket port (default 8080; 0 = any free)")
    serve.add_argument(
        "--http-port", type=int, help="HTTP port for /healthz (default 8081; 0 = any free)"
    )
    serve.add_argument(
        "--db",
        help="SQLite file (default ./chatroom.db), :memory: to keep nothing, or"
        " postgresql://USER@HOST:PORT/NAME",
    )
    serve.add_argument(
        "--redis",
        help="redis://HOST:PORT/DB: join the cluster meeting there (docs/cluster.md)",
    )
    serve.add_argument(
        "--workers", type=int, help="processes serving one port (needs --redis and a shared db)"
    )
    serve.add_argument("--config", type=Path, help="TOML file with settings (see config.py)")
    serve.add_argument("--log-level", help="debug, info, warning or error (default info)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve wss:// and https://")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    # ``bench`` takes its own options (python -m bench --help); main() passes them on.
    commands.add_parser("bench", help="run the benchmark (docs/bench.md)", add_help=False)
    chat = commands.add_parser(
        "chat",
        help="chat from the terminal",
        description="An interactive chat client: type to send, /help for commands.",
    )
    chat.add_argument("url", help="the server's WebSocket URL, e.g. ws://127.0.0.1:8080")
    chat.add_argument("--as", dest="name", required=True, help="your client id")
    chat.add_argument("--room", help="chatroom to join (created if there is none)")
    admin_cli.add_commands(commands)  # sys (system conversations), sign
    backup_cli.add_command(commands)
    return parser


def _bench(argv: list[str]) -> int:
    # The benchmark is not part of the installed package: it runs from a clone, whose
    # root is the directory holding an editable install's chatroom package.
    root = Path(chatroom.__file__).resolve().parent.parent
    if (root / "bench" / "__main__.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        bench = importlib.import_module("bench.__main__")
    except ModuleNotFoundError as exc:
        if exc.name != "bench":
            raise
        print("chatroom bench: run it from a clone of the repository", file=sys.stderr)
        return 2
    return int(bench.main(argv))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "chat":
        from chatroom.client.terminal import chat  # the server never needs the client

        return trio.run(chat, args.url, args.name, args.room, sys.stdin, sys.stdout)
    if args.command in admin_cli.COMMANDS:
        return admin_cli.run(args)
    if args.command in backup_cli.COMMANDS:
        return backup_cli.run(args)
    try:
        config = config_module.load(
            args.config,
            {
                "host": args.host,
                "port": args.port,
                "http_port": args.http_port,
                "db": args.db,
                "redis": args.redis,
                "workers": args.workers,
                "log_level": args.log_level,
                "tls_cert": args.tls_cert,
                "tls_key": args.tls_key,
            },
        )
        if config.tls_cert:
            Certificates(config.tls_cert, config.tls_key)  # fails here, not in the loop
        config_module.check_combination(config)
    except (OSError, ValueError) as exc:
        print(f"chatroom: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.workers > 1:  # this process supervises; the workers serve
        return trio.run(workers.Supervisor(config, workers.worker_command(argv)).run)
    try:
        trio.run(workers.serve_as_worker, config)
    except (StoreError, BaseExceptionGroup) as exc:
        # The database cannot be used (unreachable, not ours, too new): say so, briefly.
        refused = _store_errors(exc)
        if not refused:
            raise
        for error in refused:
            print(f"chatroom: {error}", file=sys.stderr)
        return 1
    return 0


def _store_errors(exc: BaseException) -> list[StoreError]:
    """The StoreErrors ``exc`` consists of, or [] if it holds anything else too."""
    if isinstance(exc, StoreError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [_store_errors(inner) for inner in exc.exceptions]
        return [] if not all(found) else [e for errors in found for e in errors]
    return []
