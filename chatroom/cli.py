"""``chatroom serve`` and friends."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

import trio

from chatroom import admin_cli
from chatroom import config as config_module
from chatroom.server import run_until_signalled


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
        "--db", help="SQLite file (default ./chatroom.db), or :memory: to keep nothing"
    )
    serve.add_argument("--config", type=Path, help="TOML file with settings (see config.py)")
    serve.add_argument("--log-level", help="debug, info, warning or error (default info)")
    bench = commands.add_parser("bench", help="run the benchmark (bench/README.md)", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    admin_cli.add_commands(commands)  # sys (system conversations), sign
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        bench = importlib.import_module("bench.__main__")
        return int(bench.main(args.args))
    if args.command in admin_cli.COMMANDS:
        return admin_cli.run(args)
    try:
        config = config_module.load(
            args.config,
            {
                "host": args.host,
                "port": args.port,
                "http_port": args.http_port,
                "db": args.db,
                "log_level": args.log_level,
            },
        )
    except (OSError, ValueError) as exc:
        print(f"chatroom: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    trio.run(run_until_signalled, config)
    return 0
