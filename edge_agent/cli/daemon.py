"""``edge-agent run``: the daemon, for systemd (``systemd/edge-agent.service``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, required=True, help="the store's TOML configuration")
    run.add_argument("--trace", type=Path, help="also feed this recorded trace in real time")
    run.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.daemon.service import Service  # noqa: PLC0415

    service = Service(load_config(args.config), config_path=args.config)
    if args.trace:
        service.add_trace_source(args.trace)
    return service.run_forever()
