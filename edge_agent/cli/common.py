"""What several commands share: the usage exit code, the ``--broker HOST:PORT`` type and the
store layout a command falls back to (the bundled demo store)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.core.settings import AgentConfig

EXIT_USAGE = 2


def broker_address(text: str) -> tuple[str, int]:
    """``--broker HOST:PORT`` checked by argparse, so each command gets (host, port) or usage."""
    from edge_agent.core.address import parse_host_port  # noqa: PLC0415

    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--broker {exc}") from None


def layout_config(path: Path | None) -> AgentConfig:
    """The configuration in ``path``, or the bundled demo store's when none is given."""
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.tools.storeday import demo_config  # noqa: PLC0415

    return load_config(path) if path else demo_config()
