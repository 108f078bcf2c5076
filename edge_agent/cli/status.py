"""``edge-agent status``: the local agent's figures for a technician, or JSON for monitoring.

What the figures are and how they read is ``edge_agent.daemon.statusview``'s; this prints them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser("status", help="queue, link, registry and scanners of the local agent")
    status.add_argument(
        "--config", type=Path, required=True, help="the agent's configuration (names its database)"
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts and monitoring")
    status.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from edge_agent import __version__  # noqa: PLC0415
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.daemon.statusview import read_status, status_lines, status_view  # noqa: PLC0415
    from edge_agent.storage.readonly import DatabaseUnavailable  # noqa: PLC0415

    config = load_config(args.config)
    now = time.time()
    try:
        figures = read_status(config.storage.path, now)
    except DatabaseUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    status = status_view(figures, now, config.scheduler.heartbeat_interval_s, __version__)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for line in status_lines(status):
        print(line)
    return 0
