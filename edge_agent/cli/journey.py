"""``edge-agent journey CUSTOMER_ID``: what support staff ask first ("did they get the message?").

The query and the lines are ``edge_agent.storage.journeyview``'s; this parses the options.
A customer with nothing kept (for that day) exits 1 (``EXIT_NOTHING_KEPT``), as ``grep`` does
when nothing matches: the command was well formed, the store just has no such journey, and a
script telling the two apart needs a status, not a sentence on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli.common import EXIT_USAGE

EXIT_NOTHING_KEPT = 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journey = commands.add_parser("journey", help="one customer's journey in this store, for support staff")
    journey.add_argument("customer_id", help="the customer's id, as in HQ's registry")
    journey.add_argument(
        "--config", type=Path, required=True, help="the agent's configuration (names its database)"
    )
    journey.add_argument("--date", help="local date YYYY-MM-DD (default: every day kept)")
    journey.set_defaults(handler=_cmd_journey)


def _cmd_journey(args: argparse.Namespace) -> int:
    from datetime import date  # noqa: PLC0415

    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.storage.journeyview import journey_lines, local_day_bounds, read_journey  # noqa: PLC0415
    from edge_agent.storage.readonly import DatabaseUnavailable  # noqa: PLC0415

    config = load_config(args.config)
    since, until = 0.0, float("inf")
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            print(f"--date expects YYYY-MM-DD, got {args.date!r}", file=sys.stderr)
            return EXIT_USAGE
        since, until = local_day_bounds(day, config.store.timezone)
    try:
        rows = read_journey(config.storage.path, args.customer_id, since, until)
    except DatabaseUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if not rows:
        print(
            f"no journey kept for {args.customer_id}" + (f" on {args.date}" if args.date else "")
            + ": this store keeps none for that customer (erased, never recognised here, or older "
            f"than storage.journey_days = {config.storage.journey_days:g} days)",
            file=sys.stderr,
        )  # fmt: skip
        return EXIT_NOTHING_KEPT
    print("\n".join(journey_lines(args.customer_id, config.store.id, config.store.timezone, rows)))
    return 0
