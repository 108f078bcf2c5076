"""``edge-agent``: the command line for store devices and the technicians who tune them.

edge-agent run --config FILE            the daemon
edge-agent demo [--broker HOST:PORT]    a synthetic store day end to end
edge-agent replay TRACE --config FILE   a recorded trace through the core, messages to a file
edge-agent simulate --out DIR           a simulated store day: trace plus ground truth
edge-agent evaluate TRACE TRUTH         visit precision/recall and zone accuracy against the truth
edge-agent calibrate TRACE --config F   receivers' offsets from the fixed beacons in a trace
edge-agent hq consume|report            the HQ reference consumer (shared subscriptions) and its report
edge-agent simulate-fleet --stores N    virtual stores against a broker, for HQ load tests
edge-agent schema export DIR            the HQ contract: JSON Schemas and AsyncAPI 3.0
edge-agent scan --adapter hciN          a live table of what the local adapters hear
edge-agent journey CUSTOMER --config F  one customer's journey in this store (support staff)
edge-agent status --config FILE         queue, link, registry and scanners of the local agent
edge-agent config check|show FILE       validate / print the effective configuration

Each command group is a module here with ``add_parser(commands)`` and its handlers; the work is
done beside each feature (``tools``, ``hq``, ``daemon.statusview``, ``storage.journeyview``).
Handlers import what they need when they run, so ``edge-agent --help`` and ``config check``
start without paho, rich or SQLite. This module keeps what every command shares: logging, the
exit codes of the agent's errors, Ctrl-C and a closed pipe.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from edge_agent import __version__
from edge_agent.cli import (
    calibrate,
    config,
    contract,
    daemon,
    demo,
    hq,
    journey,
    replay,
    scan,
    simulation,
    status,
)
from edge_agent.core.const import EXIT_CONFIG
from edge_agent.core.errors import BrokerRefused, ConfigError

# In the order ``edge-agent --help`` lists their commands.
_GROUPS = (daemon, demo, replay, simulation, calibrate, hq, contract, scan, journey, status, config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level or ("INFO" if args.command == "run" else "WARNING"))
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        return _reader_went_away()
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokerRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


def _reader_went_away() -> int:
    """``edge-agent status | head -4``: the reader has what it wanted. End quietly, as a Unix tool
    killed by SIGPIPE does (128 + 13), with stdout on /dev/null so the exit's flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="In-store BLE edge agent.")
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO for run (the journal wants it), WARNING for interactive commands",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.add_parser(commands)
    return parser


def _configure_logging(level: str) -> None:
    # Under systemd the journal stamps time itself; elsewhere a timestamp helps.
    under_journal = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journal
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
