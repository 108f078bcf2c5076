"""``edge-agent replay TRACE``: a recorded trace through the core, offline, messages as JSON lines
(``edge_agent.tools.replay``, which also reads the ``--downlink`` specs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from edge_agent.cli.common import EXIT_USAGE


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser("replay", help="run a recorded trace through the core, offline")
    replay.add_argument(
        "trace", type=Path, help="the recorded trace: JSON lines, as scan --record and simulate write"
    )
    replay.add_argument("--config", type=Path, required=True, help="the store's configuration")
    replay.add_argument("--output", default="-", help="JSON lines of {topic, payload}; '-' for stdout")
    replay.add_argument("--downlink", action="append", default=[], metavar="KIND=FILE[@WHEN]",
                        help="apply these downlinks (JSON lines) before the trace, or at WHEN: Unix "
                             "seconds, or +SECONDS after the first sighting; repeatable")  # fmt: skip
    replay.add_argument(
        "--speed", type=float, help="pace at N times real time (default: as fast as possible)"
    )
    replay.add_argument("--seed", default=None, help="seed for event ids (default: fixed, so output repeats)")
    replay.set_defaults(handler=_cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.tools.replay import DEFAULT_SEED, DownlinkSpecError, read_downlink_specs, replay  # noqa: PLC0415

    config = load_config(args.config)
    try:
        downlinks, timed = read_downlink_specs(args.downlink)
    except DownlinkSpecError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        trace = args.trace.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"cannot read trace {args.trace}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    with trace, _output(args.output) as out:
        report = replay(
            config,
            trace,
            out,
            downlinks=downlinks,
            timed_downlinks=timed,
            speed=args.speed,
            seed=args.seed or DEFAULT_SEED,
        )
    print(
        f"replayed {report.sightings} sightings, wrote {report.messages} messages, "
        f"{len(report.problems)} bad trace lines skipped, downlinks applied {report.downlinks_applied} "
        f"rejected {report.downlinks_rejected}",
        file=sys.stderr,
    )
    return 0


class _output:  # noqa: N801 - used as a context manager like open()
    """``--output``: the file named, or stdout for ``-`` (left open: it is not ours)."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._file: TextIO | None = None

    def __enter__(self) -> TextIO:
        if self._target == "-":
            return sys.stdout
        self._file = Path(self._target).open("w", encoding="utf-8")
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
