"""`jobwire loadtest`: load-test a running jobwire deployment end to end.

It opens N reader connections (one new user each, following all its jobs), publishes R updates/s
over `POST /api/v2/jobs/status` batches for a while, and reports: connect time, delivery latency
(from the publish timestamp to the client's receipt), delivered/expected events, per-job seq
gaps and duplicates, reconnection after forced disconnects, the server's CPU and memory (with
--server-pid, or --spawn), and its own CPU, saying when it is itself the bottleneck.

Transports: ws (WebSocket), sse, longpoll, poll (regular polling every --poll-interval; it reads
job states, so the states between two polls are counted as superseded, not lost) and mixed (an
even split over the four). With --disconnect-every N, N random connections are force-closed
every --disconnect-interval and must reconnect and resume from their cursor without loss.

Readers run in this process by default; --processes N splits them over N worker processes
(each its own event loop) while this one publishes and orchestrates, and merges their counts:
the load generator's CPU is that of every process, and each is checked for saturation.

Tokens are minted with the server's secret (--secret or JOBWIRE_SECRET; HS256 unless
JOBWIRE_JWT_ALGORITHM and JOBWIRE_JWT_PRIVATE_KEY say otherwise). Every run uses fresh users
(lt<run id>-u<i>) and jobs; each job ends `completed`. They stay on the server like any job,
until JOBWIRE_HISTORY_TTL_SECONDS (default 24 h) after their end.

Server limits (defaults) that a load test meets: new WebSocket/SSE connections per client
address 100/s, bursts of 1000 (so from one machine, connections past 1000 are paced at
100/s: refused with 429/4429 and retried, which the report counts); per user 10/s, bursts
of 100, and at most 100 open, and 100 waiting long-polls (one user per connection here keeps
these out of the way); updates per publisher 5000/s, bursts of 10000 (one publisher identity is
used per 4000 updates/s). Raise the JOBWIRE_MAX_CONNECTIONS_PER_SECOND_PER_IP setting of the
server under test, or run from several machines, to ramp faster.

Exit status: 0 every expected event arrived, with no gaps, duplicates, refusals or failed
connections; 1 otherwise; 2 the test could not run (bad options, no server).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .options import CHOICES, WS_CLIENTS, Options, parse_duration, validate


def register(sub: Any) -> None:
    """Add the `loadtest` subcommand to the `jobwire` parser's subparsers."""
    p = sub.add_parser("loadtest", help="load-test a running server end to end",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=cmd_loadtest)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", action="append", default=[], metavar="URL",
                   help="the server, http://host:port (repeat for several instances: "
                        "connections and publishing are spread over them); required "
                        "unless --spawn")
    p.add_argument("--secret", help="the server's signing secret, to mint user and publisher "
                                    "tokens [JOBWIRE_SECRET]")
    p.add_argument("--connections", type=int, default=1000,
                   help="reader connections, one user each (default 1000)")
    p.add_argument("--duration", type=_duration, default=30.0,
                   help="how long to publish: 30, 30s, 2m, 1m30s (default 30s)")
    p.add_argument("--updates-per-second", type=float, default=1000.0, dest="rate",
                   help="job updates published per second (default 1000)")
    p.add_argument("--concurrent", type=int, default=200,
                   help="connection attempts in flight while ramping up (default 200)")
    p.add_argument("--transport", default="ws", choices=[*CHOICES, "websocket"],
                   help="ws, sse, longpoll, poll, or mixed: an even split (default ws)")
    p.add_argument("--disconnect-every", type=int, default=0, metavar="N",
                   help="force-close N random connections every --disconnect-interval while "
                        "publishing; they must reconnect and resume without loss (default 0)")
    p.add_argument("--disconnect-interval", type=_duration, default=2.0,
                   help="time between forced disconnects (default 2s)")
    p.add_argument("--poll-interval", type=_duration, default=1.0,
                   help="time between two polls of a poll connection (default 1s)")
    p.add_argument("--connect-timeout", type=_duration, default=60.0,
                   help="time allowed for all connections to be made (default 60s)")
    p.add_argument("--server-pid", type=int, action="append", default=[], metavar="PID",
                   help="a local server process whose CPU and memory to report (repeatable)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="reader processes: with 1 (the default) the readers share this "
                        "process's event loop with the publisher; with N above 1 they are "
                        "split over N worker processes, each its own event loop, while this "
                        "one publishes and orchestrates (use it when the report says the load "
                        "generator is the bottleneck; at most one per spare core)")
    p.add_argument("--ws-client", choices=WS_CLIENTS, default="",
                   help="the ws readers' WebSocket library (default picows, if installed: "
                        "it costs less CPU per message than websockets)")
    p.add_argument("--spawn", action="store_true",
                   help="start a private local `jobwire serve` (random secret, free port) "
                        "and test it, to try this out")
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="with --spawn: start N instances sharing a private redis-server "
                        "(needs redis-server on the PATH; default 1, in-process broker)")
    p.add_argument("--json", nargs="?", const="", default=None, metavar="PATH",
                   help="print one JSON object instead of the report; with PATH, write it to "
                        "PATH as a result file (with the command, git commit, machine, times "
                        "and options) and print the report")


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        urls=list(args.url), secret=args.secret or os.environ.get("JOBWIRE_SECRET"),
        connections=args.connections, duration=args.duration, rate=args.rate,
        concurrent=args.concurrent, transport={"websocket": "ws"}.get(args.transport,
                                                                      args.transport),
        disconnect_every=args.disconnect_every, disconnect_interval=args.disconnect_interval,
        poll_interval=args.poll_interval, connect_timeout=args.connect_timeout,
        server_pids=list(args.server_pid), spawn=args.spawn,
        json=args.json is not None and not args.json, json_path=args.json or "",
        progress=sys.stderr.isatty(), processes=args.processes, ws_client=args.ws_client,
        instances=args.instances)


def cmd_loadtest(args: argparse.Namespace) -> int:
    o = options_from(args)
    problems = validate(o)
    if problems:
        for p in problems:
            print(f"jobwire loadtest: error: {p}", file=sys.stderr)
        return 2
    return main(o)


def main(o: Options, name: str = "loadtest") -> int:
    """Run with validated options; print the report (and with `o.json_path` write the result
    file, recorded as `name`); return the exit status."""
    from .report import as_json, human, parameters
    from .results import Run
    from .runner import execute

    run = Run(name, parameters(o)) if o.json_path else None
    try:
        status, result, error = execute(o)
    except KeyboardInterrupt:
        print("jobwire loadtest: interrupted", file=sys.stderr)
        return 130
    if result is None:
        print(f"jobwire loadtest: {error}", file=sys.stderr)
        return status
    if run is not None:
        run.save(result, o.json_path)
    if o.json:
        print(as_json(result))
        for w in [*result["bottleneck"], *result["warnings"]]:
            print(f"WARNING: {w}", file=sys.stderr)
    else:
        print(human(result))
    return status
