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
    simulate.set_defaults(handler=_cmd_simulate)

    evaluate = commands.add_parser("evaluate", help="score the agent on a simulated trace against its truth")
    evaluate.add_argument("trace", type=Path, help="the trace.jsonl simulate wrote")
    evaluate.add_argument("truth", type=Path, help="the truth.jsonl simulate wrote beside it")
    evaluate.add_argument("--config", type=Path, help="agent configuration (default: the demo store)")
    evaluate.add_argument("--filter", choices=["kalman", "median", "none"], help="override presence.filter")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(handler=_cmd_evaluate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge_agent.tools.simfiles import write_simulation  # noqa: PLC0415
    from edge_agent.tools.simulate import LayoutIncomplete, SimulationSettings, simulate_store_day  # noqa: PLC0415

    config = layout_config(args.config)
    if args.shoppers < 1 or not 0 <= args.loss < 1 or args.sigma < 0 or not 0 <= args.app_share <= 1:
        print("--shoppers >= 1, 0 <= --loss < 1, --sigma >= 0, 0 <= --app-share <= 1", file=sys.stderr)
        return EXIT_USAGE
    settings = SimulationSettings(
        shoppers=args.shoppers, seed=args.seed, sigma_db=args.sigma, loss=args.loss, app_share=args.app_share
    )
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from edge_agent.core.trace import TraceProblem  # noqa: PLC0415
    from edge_agent.tools.evaluate import run_core, score  # noqa: PLC0415
    from edge_agent.tools.simfiles import TruthFileError, read_trace_file, read_truth  # noqa: PLC0415

    config = layout_config(args.config)
    if args.filter:
        config = config.model_copy(
            update={"presence": config.presence.model_copy(update={"filter": args.filter})}
        )
    try:
        customers, truth = read_truth(args.truth)
        problems: list[TraceProblem] = []
        messages, count = run_core(config, customers, read_trace_file(args.trace, problems))
    except TruthFileError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for problem in problems[:10]:
        print(f"{args.trace}:{problem.line_number}: {problem.reason}", file=sys.stderr)
    scores = score(truth, messages, count)
    if args.json:
        import dataclasses  # noqa: PLC0415

        print(json.dumps(dataclasses.asdict(scores) | {"filter": config.presence.filter}, indent=2))
        return 0
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{args.trace} against {args.truth} (filter: {config.presence.filter})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in scores.rows():
        table.add_row(name, value)
    Console().print(table)
    return 0
