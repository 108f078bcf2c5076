"""``edge-agent schema export DIR``: the HQ contract (``edge_agent.hq.contract``) as files."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_agent.cli.common import layout_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = commands.add_parser("schema", help="the HQ contract: JSON Schemas and an AsyncAPI 3.0 document")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write DIR/schemas/*.json and DIR/asyncapi.json")
    export.add_argument(
        "directory", type=Path, help="where schemas/ and asyncapi.json go (created if missing)"
    )
    export.add_argument("--config", type=Path, help="take the topic prefix from this configuration")
    export.set_defaults(handler=_cmd_schema_export)


def _cmd_schema_export(args: argparse.Namespace) -> int:
    from edge_agent.hq.contract import export  # noqa: PLC0415

    prefix = layout_config(args.config).mqtt.topic_prefix
    for path in export(args.directory, prefix):
        print(path)
    return 0
