"""``edge-agent config check|show FILE``: validate a configuration, or print it as the agent reads
it. ``check`` is what a technician runs after each edit, so it imports the configuration loader
and nothing else."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="check or show a configuration file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="exit 0 if FILE is valid, else list every problem")
    check.add_argument("file", type=Path, help="the TOML configuration to check")
    check.set_defaults(handler=_cmd_config_check)
    show = config_commands.add_parser("show", help="print the effective configuration, secrets redacted")
    show.add_argument("file", type=Path, help="the TOML configuration, with its environment overrides")
    show.set_defaults(handler=_cmd_config_show)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.core.validation import config_warnings  # noqa: PLC0415

    config = load_config(args.file)
    print(f"{args.file}: valid (store {config.store.id}, {len(config.receivers)} receivers)")
    for warning in config_warnings(config):
        print(f"  warning: {warning}", file=sys.stderr)
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config, render_toml  # noqa: PLC0415

    sys.stdout.write(render_toml(load_config(args.file)))
    return 0
