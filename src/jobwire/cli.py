"""The `jobwire` command: serve, demo, token, publish, watch."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import secrets
import sys
from typing import Any

from .config import Settings, env_name
from .errors import ConfigError, JobwireError
from .workers import Supervisor, shared_socket, worker_index


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        conv = int if kind.startswith("int") else float if kind.startswith("float") else str
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=conv,
                            default=None,
                            help=f"{f.metadata['help']} [{env_name(f.name)}, default {f.default}]")


def _settings(args: argparse.Namespace, **forced: Any) -> Settings:
    flags = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(Settings)}
    return Settings.load(os.environ, {**flags, **forced})


def _run(settings: Settings, on_start: Any = None) -> None:
    import uvicorn

    from .app import create_app, websocket_server_protocol
    from .logs import configure as configure_logs
    from .logs import uvicorn_log_config
    from .server import DrainingServer, tune_garbage_collector

    configure_logs(settings.log_level, settings.log_format)
    app = create_app(settings, on_start=on_start)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop", http="httptools",
        ws=websocket_server_protocol(app), ws_max_size=settings.max_message_bytes,
        # Small JSON messages: compression costs more CPU than it saves.
        ws_per_message_deflate=False,
        # The heartbeats, written every interval, find a vanished peer: what they leave
        # unacknowledged past ws_ping_timeout drops the connection (TCP_USER_TIMEOUT, set by
        # the WebSocket protocol). Pings are for peers whose TCP still answers.
        ws_ping_interval=settings.ws_ping_seconds or None,
        ws_ping_timeout=settings.heartbeat_seconds,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds) or None,
        log_level=settings.log_level, access_log=False, server_header=False,
        log_config=uvicorn_log_config(settings.log_level, settings.log_format))
    tune_garbage_collector()
    server = DrainingServer(config, app.state.service)
    if worker_index() is not None:  # one of several: the port is shared
        server.run(sockets=[shared_socket(settings.host, settings.port)])
    else:
        server.run()


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.workers > 1:
        from .logs import configure as configure_logs

        configure_logs(settings.log_level, settings.log_format)
        return Supervisor(settings).run()
    _run(settings)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .auth import JwtAuth
    from .demo import USERS, run_crawler

    secret = secrets.token_urlsafe(32)
    settings = _settings(args, secret=secret, jwt_algorithm="HS256", workers=1)
    auth = JwtAuth(secret=secret)
    base = f"http://{settings.host}:{settings.port}"
    print(f"jobwire demo on {base}: a simulated crawler runs jobs for {', '.join(USERS)}.\n")
    for user, role in [*((u, "user") for u in USERS), ("admin", "admin")]:
        print(f"  {user:<6} ({role}): {base}/?token={auth.mint(user, role, ttl=86400)}")
    print(f"\n  publisher token: {auth.mint('demo-publisher', 'publisher', ttl=86400)}")
    print("\nPress Ctrl+C to stop.", flush=True)
    _run(settings, on_start=lambda service: asyncio.create_task(run_crawler(service)))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from .tokens import Tokens

    env = {**os.environ, **({"JOBWIRE_SECRET": args.secret} if args.secret else {})}
    claims = dict(_claim(text) for text in args.claim or ())
    print(Tokens.from_env(env).mint(args.user, args.role, ttl=args.ttl, claims=claims))
    return 0


def _claim(text: str) -> tuple[str, Any]:
    """`name=value`: the value as JSON if it parses (numbers, lists), else as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--claim {text!r}: use name=value")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def cmd_publish(args: argparse.Namespace) -> int:
    from .publisher import Publisher
    from .tokens import Tokens

    token = args.token or os.environ.get("JOBWIRE_TOKEN")
    if not token:
        token = Tokens.from_env().mint("cli-publisher", "publisher", ttl=300)
    extra = {"workerId": args.worker, "eventId": args.event_id,
             "result": json.loads(args.result) if args.result else None,
             "error": json.loads(args.error) if args.error else None}
    with Publisher(args.url, token) as publisher:
        answer = publisher.update(args.job_id, args.user, args.status, args.progress,
                                  args.operation, **extra)
    print(json.dumps(answer))
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from importlib import resources

    from .capacity_cli import report

    if args.costs:
        try:
            with open(args.costs, encoding="utf-8") as fh:
                text, origin = fh.read(), args.costs
        except OSError as exc:
            raise ValueError(f"--costs {args.costs}: {exc.strerror}") from None
    else:
        text = resources.files("jobwire").joinpath("capacity_costs.json").read_text()
        origin = "jobwire/capacity_costs.json"
    print(report(args, text, origin))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobwire", description="Live job status.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _serve_flags(serve)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run the server with a simulated crawler")
    _serve_flags(demo)
    demo.set_defaults(func=cmd_demo)

    token = sub.add_parser("token", help="mint a token with the server's key settings")
    token.add_argument("user")
    token.add_argument("--role", choices=["user", "admin", "publisher"], default="user")
    token.add_argument("--ttl", type=float, default=3600, help="seconds until it expires")
    token.add_argument("--secret", help="signing secret [JOBWIRE_SECRET]")
    token.add_argument("--claim", action="append", metavar="NAME=VALUE",
                       help="a claim of your own (repeatable); VALUE is JSON or a string")
    token.set_defaults(func=cmd_token)

    pub = sub.add_parser("publish", help="publish one job update over HTTP")
    pub.add_argument("job_id")
    pub.add_argument("--user", required=True, help="the job's owner")
    pub.add_argument("--status", required=True,
                     choices=["queued", "processing", "completed", "failed", "cancelled"])
    pub.add_argument("--progress", type=float)
    pub.add_argument("--operation", help="currentOperation text")
    pub.add_argument("--worker", help="workerId")
    pub.add_argument("--event-id", help="eventId, for idempotent retries")
    pub.add_argument("--result", help="result as JSON")
    pub.add_argument("--error", help="error as JSON")
    pub.add_argument("--url", default=os.environ.get("JOBWIRE_URL", "http://127.0.0.1:3000"))
    pub.add_argument("--token", help="publisher token [JOBWIRE_TOKEN; else minted from "
                                     "JOBWIRE_SECRET]")
    pub.set_defaults(func=cmd_publish)
    from .watch import register as register_watch
    register_watch(sub)
    from .loadtest import register as register_loadtest
    register_loadtest(sub)
    from .capacity_cli import add_arguments as capacity_arguments
    capacity = sub.add_parser("capacity", help="instances, Redis shards, memory and bandwidth "
                                               "a load needs")
    capacity_arguments(capacity)
    capacity.set_defaults(func=cmd_capacity)
    return parser


# The load generator's own imports (its WebSocket readers, its HTTP/1.1 client): the
# `loadtest` extra installs them.
LOADTEST_MODULES = ("picows", "httptools")


def missing_loadtest_modules() -> list[str]:
    missing = []
    for name in LOADTEST_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "loadtest" and (missing := missing_loadtest_modules()):
        print(f"jobwire loadtest: needs {' and '.join(missing)}, which come with the loadtest "
              "extra: pip install 'jobwire[loadtest]'", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:
        print(f"jobwire: error: {exc}", file=sys.stderr)
        return 2
    except JobwireError as exc:
        print(f"jobwire: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
