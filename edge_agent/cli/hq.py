"""``edge-agent hq consume|report`` and ``simulate-fleet``: the reference consumer HQ teams start
from, its report, and the load test that drives N virtual stores into it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge_agent.cli.common import EXIT_USAGE, broker_address
from edge_agent.hq.store import DatabaseTarget, StoreUnavailable, describe, is_url, parse_target

_LOGGER = logging.getLogger(__name__)
STATS_INTERVAL_S = 10


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hq = commands.add_parser("hq", help="the HQ reference consumer of every store's feed")
    hq_commands = hq.add_subparsers(dest="hq_command", required=True)
    consume = hq_commands.add_parser(
        "consume", help="store every store's events in SQLite or PostgreSQL, exactly once"
    )
    consume.add_argument(
        "--broker",
        required=True,
        type=broker_address,
        metavar="HOST:PORT",
        help="HOST:PORT of the chain's broker",
    )
    consume.add_argument("--group", required=True, help="shared-subscription group: instances split the feed")
    consume.add_argument(
        "--db",
        type=parse_target,
        required=True,
        metavar="FILE|URL",
        help="the SQLite file the group shares (created if missing), or a postgresql:// URL",
    )
    consume.add_argument("--prefix", default="retail/v1", help="the stores' topic prefix (default retail/v1)")
    consume.add_argument("--client-id", help="stable id of this instance, so a restart resumes its session")
    consume.set_defaults(handler=_cmd_hq_consume)
    fleet = commands.add_parser("simulate-fleet", help="N virtual stores against a broker, HQ consuming them")
    fleet.add_argument("--stores", type=int, required=True, help="how many virtual stores publish at once")
    fleet.add_argument(
        "--broker",
        required=True,
        type=broker_address,
        metavar="HOST:PORT",
        help="HOST:PORT of an MQTT v5 broker (shared subscriptions)",
    )
    fleet.add_argument("--rate", type=float, default=10.0, help="events per store per second (default 10)")
    fleet.add_argument("--seconds", type=float, default=10.0, help="how long to offer that load (default 10)")
    fleet.add_argument("--burst", type=int, default=0, help="instead: this many events per store at once")
    fleet.add_argument("--consumers", type=int, default=2, help="HQ consumer instances in the group")
    fleet.add_argument(
        "--db",
        type=parse_target,
        metavar="FILE|URL",
        help="HQ's database (default: a SQLite file in a temporary directory); a postgresql:// URL",
    )
    fleet.set_defaults(handler=_cmd_simulate_fleet)
    hq_report = hq_commands.add_parser(
        "report", help="per-store journey figures from the consumer's database"
    )
    hq_report.add_argument(
        "--db",
        type=parse_target,
        required=True,
        metavar="FILE|URL",
        help="the database hq consume filled: a SQLite file or a postgresql:// URL",
    )
    hq_report.add_argument("--json", action="store_true", help="print the figures as JSON, gaps included")
    hq_report.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write the journey report per store and day as one self-contained HTML page",
    )
    hq_report.add_argument(
        "--store-config",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a store's agent configuration, for its floor plan and time zone in --html (repeatable)",
    )
    hq_report.set_defaults(handler=_cmd_hq_report)


def _cmd_hq_consume(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from edge_agent.hq.consumer import HqConsumer  # noqa: PLC0415

    host, port = args.broker
    if args.log_level is None:  # a long-running service, like `run`: its journal wants INFO
        logging.getLogger().setLevel(logging.INFO)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        consumer = HqConsumer(
            host, port, args.group, args.db, prefix=args.prefix, client_id=args.client_id
        ).start()
    except StoreUnavailable as exc:
        print(f"cannot open HQ's database {exc}", file=sys.stderr)
        return 1
    try:
        while not stop.wait(STATS_INTERVAL_S):
            s = consumer.stats
            _LOGGER.info(
                "received=%d stored=%d duplicates=%d rejected=%d",
                s.received,
                s.stored,
                s.duplicates,
                s.rejected,
            )
    except KeyboardInterrupt:
        pass
    consumer.stop()
    return 0


def _cmd_simulate_fleet(args: argparse.Namespace) -> int:
    from edge_agent.tools.fleet import run_fleet  # noqa: PLC0415

    host, port = args.broker
    if args.stores < 1 or args.consumers < 1 or args.rate <= 0 or args.seconds <= 0 or args.burst < 0:
        print("--stores, --consumers >= 1; --rate, --seconds > 0; --burst >= 0", file=sys.stderr)
        return EXIT_USAGE
    r = run_fleet(
        host,
        port,
        args.stores,
        rate=args.rate,
        seconds=args.seconds,
        consumers=args.consumers,
        burst=args.burst,
        db=args.db,
    )
    print(
        f"{r.stores} stores, {r.consumers} HQ consumers: {r.delivered}/{r.events} events in "
        f"{r.seconds:.1f} s = {r.messages_per_s:,.0f} msg/s end to end; outbox -> HQ database "
        f"p50 {r.latency_p50_ms:.0f} ms, p99 {r.latency_p99_ms:.0f} ms, max {r.latency_max_ms:.0f} ms"
    )
    return 0 if r.delivered == r.events else 1


def _cmd_hq_report(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from edge_agent.hq.report import report, report_blocks  # noqa: PLC0415

    if not is_url(args.db) and not Path(args.db).exists():
        print(f"no such database: {args.db}", file=sys.stderr)
        return EXIT_USAGE
    if args.html is not None:
        failed = _write_html_report(args.db, args.html, args.store_config)
        if failed:
            return failed
        if not args.json:
            return 0
    try:
        figures = report(args.db)
    except StoreUnavailable as exc:
        print(f"cannot open HQ's database {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
        return 0
    from rich.console import Console  # noqa: PLC0415

    Console().print(report_blocks(figures, title=f"HQ report from {describe(args.db)}"))
    return 0


def _write_html_report(db: DatabaseTarget, out: Path, store_configs: list[Path]) -> int:
    """``--html``: the journey report of the database, with the layouts of the stores given."""
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.core.errors import ConfigError  # noqa: PLC0415
    from edge_agent.hq.html_report import render_report  # noqa: PLC0415
    from edge_agent.hq.journey_figures import StoreLayout, decoded, journey_figures  # noqa: PLC0415
    from edge_agent.hq.store import open_store  # noqa: PLC0415

    layouts = {}
    for path in store_configs:
        try:
            # As the file says: HQ's own environment must not rename or move another store.
            layout = StoreLayout.from_config(load_config(path, environ={}))
        except (OSError, ConfigError) as exc:
            print(f"--store-config {path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        layouts[layout.store_id] = layout
    try:
        store = open_store(db)
    except StoreUnavailable as exc:
        print(f"cannot open HQ's database {exc}", file=sys.stderr)
        return 1
    try:
        figures = journey_figures(decoded(store.events()), layouts, store.gaps())
    finally:
        store.close()
    page = render_report(figures, layouts, title="Journey report", source=f"HQ database {describe(db)}")
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"journey report: {out}")
    return 0
