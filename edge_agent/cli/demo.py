"""``edge-agent demo``: the README's first command, a synthetic store day end to end through MQTT
(``edge_agent.tools.demo``), or that day written as files with ``--export DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli.common import EXIT_USAGE


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="replay a synthetic store day through MQTT and show what HQ gets")
    demo.add_argument(
        "--broker", type=_demo_broker, metavar="HOST:PORT", help="use this broker instead of the embedded one"
    )
    demo.add_argument("--config", type=Path, help="store configuration (default: the bundled demo store)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic day (default 7)")
    demo.add_argument("--shoppers", type=int, default=240, help="shoppers in the day (default 240)")
    demo.add_argument("--hours", type=int, default=12, help="opening hours of the synthetic day (2..14)")
    demo.add_argument(
        "--export", type=Path, metavar="DIR", help="write the day's trace and downlinks, then exit"
    )
    demo.set_defaults(handler=_cmd_demo)


def _demo_broker(text: str) -> str:
    """``--broker`` checked as the demo reads it (an empty host is this machine), kept as text."""
    from edge_agent.core.address import parse_host_port  # noqa: PLC0415

    try:
        parse_host_port(text, default_host="127.0.0.1")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--broker {exc}") from None
    return text


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    from edge_agent.tools.demo import export_demo_day, print_summary, run_demo  # noqa: PLC0415

    console = Console()
    if not 2 <= args.hours <= 14:
        print("--hours must be between 2 and 14", file=sys.stderr)
        return EXIT_USAGE
    if args.export:
        sightings, downlinks = export_demo_day(args.export, args.seed, args.shoppers, args.hours)
        print(f"wrote {sightings} sightings and {downlinks} downlinks to {args.export}")
        return 0
    try:
        result = run_demo(
            args.broker,
            args.config,
            seed=args.seed,
            shoppers=args.shoppers,
            console=console,
            hours=args.hours,
        )
    except RuntimeError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    print_summary(result, console)
    return 0 if result.published > 0 and result.lost == 0 else 1
