"""``edge-agent simulate`` and ``evaluate``: how technicians and developers measure presence
accuracy, a simulated store day (``edge_agent.tools.simulate``) scored against its ground truth
(``edge_agent.tools.evaluate``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli.common import EXIT_USAGE, layout_config
from edge_agent.core.const import EXIT_CONFIG


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate", help="simulate a store day from the layout in the config: trace + ground truth"
    )
    simulate.add_argument("--config", type=Path, help="store layout (default: the demo store)")
    simulate.add_argument("--out", type=Path, required=True, help="directory for trace.jsonl, truth.jsonl")
    simulate.add_argument("--shoppers", type=int, default=300, help="shoppers in the day (default 300)")
    simulate.add_argument("--seed", type=int, default=7, help="seed of the simulation (default 7)")
    simulate.add_argument("--sigma", type=float, default=4.0, help="log-normal shadowing, dB (default 4)")
    simulate.add_argument("--loss", type=float, default=0.1, help="packet loss per receiver (default 0.1)")
    simulate.add_argument("--app-share", type=float, default=0.3, help="shoppers with the app (default 0.3)")
    simulate.add_argument(
        "--drift", action="append", default=[], metavar="RECEIVER:DB@SECONDS",
        help="shift RECEIVER's gain by DB from SECONDS after opening (repeatable; in the truth file)",
    )  # fmt: skip
    simulate.add_argument(
        "--beacon-interval",
        type=float,
        default=10.0,
        help="fixed beacons' advertising interval, s (default 10)",
    )
    simulate.set_defaults(handler=_cmd_simulate)

    evaluate = commands.add_parser("evaluate", help="score the agent on a simulated trace against its truth")
    evaluate.add_argument("trace", type=Path, help="the trace.jsonl simulate wrote")
    evaluate.add_argument("truth", type=Path, help="the truth.jsonl simulate wrote beside it")
    evaluate.add_argument("--config", type=Path, help="agent configuration (default: the demo store)")
    evaluate.add_argument("--filter", choices=["kalman", "median", "none"], help="override presence.filter")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument(
        "--no-calibration", action="store_true", help="zone with the configured receiver powers only"
    )
    evaluate.add_argument(
        "--truth-config", type=Path, help="the config simulate was given: each receiver's calibration error"
    )
    evaluate.set_defaults(handler=_cmd_evaluate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge_agent.tools.simfiles import write_simulation  # noqa: PLC0415
    from edge_agent.tools.simulate import LayoutIncomplete, SimulationSettings, simulate_store_day  # noqa: PLC0415

    config = layout_config(args.config)
    if args.shoppers < 1 or not 0 <= args.loss < 1 or args.sigma < 0 or not 0 <= args.app_share <= 1:
        print("--shoppers >= 1, 0 <= --loss < 1, --sigma >= 0, 0 <= --app-share <= 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        drift = tuple(_drift(text, {r.id for r in config.receivers}) for text in args.drift)
    except ValueError as exc:
        print(f"--drift {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.beacon_interval <= 0:
        print("--beacon-interval > 0", file=sys.stderr)
        return EXIT_USAGE
    settings = SimulationSettings(
        shoppers=args.shoppers, seed=args.seed, sigma_db=args.sigma, loss=args.loss, app_share=args.app_share,
        beacon_interval_s=args.beacon_interval, drift=drift,
    )  # fmt: skip
    try:
        simulation = simulate_store_day(config, settings)
    except LayoutIncomplete as exc:
        print(f"{args.config or 'demo store'}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # Both files say how they were made: the command line as typed, when this process is that command.
    command = (
        " ".join(["edge-agent", *sys.argv[1:]]) if sys.argv[1:2] == ["simulate"] else "edge-agent simulate"
    )
    sightings, visits = write_simulation(simulation, args.out, command)
    config_arg = f" --config {args.config}" if args.config else ""
    print(f"wrote {sightings:,} sightings of {visits} shoppers to {args.out}")
    print(f"score it: edge-agent evaluate {args.out / 'trace.jsonl'} {args.out / 'truth.jsonl'}{config_arg}")
    return 0


def _drift(text: str, receivers: set[str]) -> tuple[str, float, float]:
    """``RECEIVER:DB@SECONDS`` -> (receiver, dB, seconds after opening)."""
    receiver, _, rest = text.partition(":")
    db, _, at = rest.partition("@")
    try:
        shift, seconds = float(db), float(at)
    except ValueError:
        raise ValueError(f"{text!r}: expected RECEIVER:DB@SECONDS, e.g. home:-8@14400") from None
    if receiver not in receivers:
        raise ValueError(
            f"{text!r}: unknown receiver {receiver!r} (receivers: {', '.join(sorted(receivers))})"
        )
    if seconds < 0:
        raise ValueError(f"{text!r}: SECONDS must not be negative")
    return receiver, shift, seconds


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from edge_agent.core.trace import TraceProblem  # noqa: PLC0415
    from edge_agent.tools.evaluate import calibration_errors, drive_core, score  # noqa: PLC0415
    from edge_agent.tools.simfiles import (  # noqa: PLC0415
        TruthFileError,
        read_drift,
        read_trace_file,
        read_truth,
    )

    config = layout_config(args.config)
    if args.filter:
        config = config.model_copy(
            update={"presence": config.presence.model_copy(update={"filter": args.filter})}
        )
    if args.no_calibration:
        config = config.model_copy(
            update={"calibration": config.calibration.model_copy(update={"enabled": False})}
        )
    truth_config = layout_config(args.truth_config) if args.truth_config else None
    try:
        customers, truth = read_truth(args.truth)
        drift = read_drift(args.truth)
        problems: list[TraceProblem] = []
        messages, count, core = drive_core(config, customers, read_trace_file(args.trace, problems))
    except TruthFileError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for problem in problems[:10]:
        print(f"{args.trace}:{problem.line_number}: {problem.reason}", file=sys.stderr)
    scores = score(truth, messages, count)
    errors = [] if truth_config is None else calibration_errors(core, truth_config, drift)
    if args.json:
        import dataclasses  # noqa: PLC0415

        figures = dataclasses.asdict(scores) | {"filter": config.presence.filter}
        figures["calibration"] = core.calibration.active
        if truth_config is not None:
            figures["calibration_error_db"] = {e.receiver: e.error_db for e in errors}
        print(json.dumps(figures, indent=2))
        return 0
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{args.trace} against {args.truth} (filter: {config.presence.filter})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in scores.rows():
        table.add_row(name, value)
    table.add_row("receivers' calibration", "on" if core.calibration.active else "off")
    for error in errors:
        value = "not estimated" if error.error_db is None else f"{error.error_db:+.2f} dB"
        table.add_row(f"calibration error {error.receiver} (true {error.true_offset_db:+.1f})", value)
    Console().print(table)
    return 0
