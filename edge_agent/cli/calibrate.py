"""``edge-agent calibrate TRACE --config FILE [--write-toml OUT]``: the receivers' calibration a
trace gives (``edge_agent.tools.calibrate``), for the technician who commissions a store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli.common import EXIT_USAGE, layout_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="estimate each receiver's offset from the fixed beacons in a recorded trace"
    )
    calibrate.add_argument("trace", type=Path, help="a trace (scan --record, or simulate's trace.jsonl)")
    calibrate.add_argument("--config", type=Path, help="store configuration (default: the demo store)")
    calibrate.add_argument(
        "--write-toml", type=Path, metavar="OUT", help="write the suggested values as TOML"
    )
    calibrate.set_defaults(handler=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from edge_agent.core.trace import TraceProblem  # noqa: PLC0415
    from edge_agent.tools.calibrate import calibrate_trace, suggested_toml  # noqa: PLC0415
    from edge_agent.tools.simfiles import read_trace_file  # noqa: PLC0415

    config = layout_config(args.config)
    problems: list[TraceProblem] = []
    try:
        report = calibrate_trace(config, read_trace_file(args.trace, problems))
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for problem in problems[:10]:
        print(f"{args.trace}:{problem.line_number}: {problem.reason}", file=sys.stderr)
    if not report.active:
        print(
            "calibration is off: no [[beacons]] entry has a position (or calibration.enabled = false)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"{report.sightings:,} sightings; offsets in dB against -59 dBm at 1 m")
    print(
        f"{'receiver':<16} {'configured':>10} {'estimated':>10} {'change':>7} {'samples':>8} "
        f"{'beacons':>7} {'residual':>8} {'confidence':>10}  state"
    )
    for r in report.receivers:
        estimated = "-" if r.offset_db is None else f"{r.offset_db:+.1f}"
        change = "-" if r.offset_db is None else f"{r.offset_db - r.configured_offset_db:+.1f}"
        residual = "-" if r.residual_db is None else f"{r.residual_db:.1f}"
        print(
            f"{r.receiver:<16} {r.configured_offset_db:>+10.1f} {estimated:>10} {change:>7} {r.samples:>8} "
            f"{r.beacons:>7} {residual:>8} {r.confidence:>10.2f}  {r.state}"
            + (f" ({r.rejected} readings rejected)" if r.rejected else "")
        )
    for b in report.beacons:
        if b.state != "in_place":
            print(f"beacon {b.beacon_id}: {b.state} (heard well by {b.receivers} receivers)")
    for event in report.events:
        print(f"event {event.ts.isoformat()} {event.schema_name} {_describe(event)}")
    if args.write_toml:
        args.write_toml.write_text(suggested_toml(config, report.receivers), encoding="utf-8")
        print(f"suggested values written to {args.write_toml}")
    return 0


def _describe(event: object) -> str:
    from edge_agent.core.events import BeaconMessage, ReceiverMessage  # noqa: PLC0415

    if isinstance(event, ReceiverMessage):
        return f"{event.event} {event.receiver.receiver} (offset {event.receiver.offset_db})"
    if isinstance(event, BeaconMessage):
        return f"{event.event} {event.beacon.beacon_id} (residuals {event.residuals_db})"
    return ""
