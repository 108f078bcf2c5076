"""``edge-agent scan``: a live table of what the local adapters hear (``edge_agent.tools.scan``),
how a technician checks receivers and beacons on site, optionally recorded as a trace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli.common import EXIT_USAGE

# Nothing was scanned: no adapter could start (the reasons are on stderr).
EXIT_NO_SCANNER = 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = commands.add_parser("scan", help="live table of what the local adapters hear")
    scan.add_argument("--config", type=Path, help="scan the receivers with an adapter in this file")
    scan.add_argument("--adapter", action="append", default=[], metavar="hciN", help="scan this adapter")
    scan.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    scan.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="write what is heard as a trace: phones' addresses pseudonymised for this recording, "
        "only the advertisement fields the agent decodes kept",
    )
    scan.add_argument(
        "--record-raw",
        action="store_true",
        help="with --record: keep every device's real address and every advertisement field "
        "(personal data: use only when needed)",
    )
    scan.add_argument("--throttle", type=float, help="seconds between RSSI-only updates of one device")
    scan.set_defaults(handler=_cmd_scan)


def _cmd_scan(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.core.settings import BleSettings  # noqa: PLC0415
    from edge_agent.tools.scan import run_scan  # noqa: PLC0415

    settings = BleSettings()
    receivers: list[tuple[str, str]] = []
    if args.config:
        config = load_config(args.config)
        settings = config.ble
        receivers = [(r.id, r.adapter) for r in config.receivers if r.adapter]
    receivers += [(adapter, adapter) for adapter in args.adapter]
    if not receivers:
        print(
            "nothing to scan: give --adapter hciN, or --config with a receiver that has an adapter",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.throttle is not None:
        settings = settings.model_copy(update={"throttle_s": args.throttle})
    if args.record_raw and not args.record:
        print("--record-raw goes with --record FILE", file=sys.stderr)
        return EXIT_USAGE
    result = run_scan(
        receivers, settings, Console(), duration=args.duration, record=args.record, raw=args.record_raw
    )
    if args.record:
        print(
            f"recorded {sum(r.sightings for r in result.view.rows.values())} sightings to {args.record}",
            file=sys.stderr,
        )
    for health in result.never_ran:
        why = health.reason or health.last_error or "it did not start before the scan ended"
        print(f"scanner {health.receiver}/{health.adapter} never ran: {why}", file=sys.stderr)
    if len(result.never_ran) == len(result.scanners):
        print("no scanner ran: nothing was heard", file=sys.stderr)
        return EXIT_NO_SCANNER
    return 0
