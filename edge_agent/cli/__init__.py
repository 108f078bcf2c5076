"""``edge-agent``: the command line for store devices and the technicians who tune them.

edge-agent run --config FILE            the daemon
edge-agent demo [--broker HOST:PORT]    a synthetic store day end to end
edge-agent replay TRACE --config FILE   a recorded trace through the core, messages to a file
edge-agent simulate --out DIR           a simulated store day: trace plus ground truth
edge-agent evaluate TRACE TRUTH         visit precision/recall and zone accuracy against the truth
edge-agent config check|show FILE       validate / print the effective configuration
edge-agent schema export DIR            the HQ contract: JSON Schemas and AsyncAPI 3.0
edge-agent hq consume|report            the HQ reference consumer (shared subscriptions) and its report
edge-agent simulate-fleet --stores N    virtual stores against a broker, for HQ load tests
edge-agent journey CUSTOMER --config F  one customer's journey in this store (support staff)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from edge_agent import __version__
from edge_agent.core.const import EXIT_CONFIG
from edge_agent.core.errors import BrokerRefused, ConfigError

if TYPE_CHECKING:
    from edge_agent.core.settings import AgentConfig

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level or ("INFO" if args.command == "run" else "WARNING"))
    try:
        return args.handler(args)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="In-store BLE edge agent.")
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO for run (the journal wants it), WARNING for interactive commands",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--trace", type=Path, help="also feed this recorded trace in real time")
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser("demo", help="replay a synthetic store day through MQTT and show what HQ gets")
    demo.add_argument("--broker", metavar="HOST:PORT", help="use this broker instead of the embedded one")
    demo.add_argument("--config", type=Path, help="store configuration (default: the bundled demo store)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--shoppers", type=int, default=240)
    demo.add_argument("--hours", type=int, default=12, help="opening hours of the synthetic day (2..14)")
    demo.add_argument(
        "--export", type=Path, metavar="DIR", help="write the day's trace and downlinks, then exit"
    )
    demo.set_defaults(handler=_cmd_demo)

    replay = commands.add_parser("replay", help="run a recorded trace through the core, offline")
    replay.add_argument("trace", type=Path)
    replay.add_argument("--config", type=Path, required=True)
    replay.add_argument("--output", default="-", help="JSON lines of {topic, payload}; '-' for stdout")
    replay.add_argument("--downlink", action="append", default=[], metavar="KIND=FILE[@WHEN]",
                        help="apply these downlinks (JSON lines) before the trace, or at WHEN: Unix "
                             "seconds, or +SECONDS after the first sighting; repeatable")  # fmt: skip
    replay.add_argument(
        "--speed", type=float, help="pace at N times real time (default: as fast as possible)"
    )
    replay.add_argument("--seed", default=None, help="seed for event ids (default: fixed, so output repeats)")
    replay.set_defaults(handler=_cmd_replay)

    _add_simulation_commands(commands)

    _add_hq_commands(commands)

    _add_contract_commands(commands)

    scan = commands.add_parser("scan", help="live table of what the local adapters hear")
    scan.add_argument("--config", type=Path, help="scan the receivers with an adapter in this file")
    scan.add_argument("--adapter", action="append", default=[], metavar="hciN", help="scan this adapter")
    scan.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    scan.add_argument("--record", type=Path, metavar="FILE", help="write what is heard as a trace")
    scan.add_argument(
        "--record-raw",
        action="store_true",
        help="with --record: keep every device's real address and every advertisement field "
        "(default: addresses of non-beacons pseudonymised per recording, only decoded fields kept)",
    )
    scan.add_argument("--throttle", type=float, help="seconds between RSSI-only updates of one device")
    scan.set_defaults(handler=_cmd_scan)

    _add_journey_command(commands)

    status = commands.add_parser("status", help="queue, link, registry and scanners of the local agent")
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--json", action="store_true", help="print JSON for scripts and monitoring")
    status.set_defaults(handler=_cmd_status)

    config = commands.add_parser("config", help="check or show a configuration file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="exit 0 if FILE is valid, else list every problem")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_cmd_config_check)
    show = config_commands.add_parser("show", help="print the effective configuration, secrets redacted")
    show.add_argument("file", type=Path)
    show.set_defaults(handler=_cmd_config_show)
    return parser


def _add_journey_command(commands: argparse._SubParsersAction) -> None:
    """``journey CUSTOMER_ID``: what support staff ask first ("did they get the message?")."""
    journey = commands.add_parser("journey", help="one customer's journey in this store, for support staff")
    journey.add_argument("customer_id")
    journey.add_argument("--config", type=Path, required=True)
    journey.add_argument("--date", help="local date YYYY-MM-DD (default: every day kept)")
    journey.set_defaults(handler=_cmd_journey)


def _add_contract_commands(commands: argparse._SubParsersAction) -> None:
    """``schema export``: the HQ contract as files."""
    schema = commands.add_parser("schema", help="the HQ contract: JSON Schemas and an AsyncAPI 3.0 document")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write DIR/schemas/*.json and DIR/asyncapi.json")
    export.add_argument("directory", type=Path)
    export.add_argument("--config", type=Path, help="take the topic prefix from this configuration")
    export.set_defaults(handler=_cmd_schema_export)


def _broker_address(text: str) -> tuple[str, int]:
    """``--broker HOST:PORT`` checked by argparse, so each command gets (host, port) or usage."""
    from edge_agent.hq.consumer import parse_broker  # noqa: PLC0415

    try:
        return parse_broker(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_hq_commands(commands: argparse._SubParsersAction) -> None:
    """``hq consume`` and ``hq report``: the reference consumer HQ teams start from."""
    hq = commands.add_parser("hq", help="the HQ reference consumer of every store's feed")
    hq_commands = hq.add_subparsers(dest="hq_command", required=True)
    consume = hq_commands.add_parser("consume", help="store every store's events in SQLite, exactly once")
    consume.add_argument(
        "--broker",
        required=True,
        type=_broker_address,
        metavar="HOST:PORT",
        help="HOST:PORT of the chain's broker",
    )
    consume.add_argument("--group", required=True, help="shared-subscription group: instances split the feed")
    consume.add_argument("--db", type=Path, required=True)
    consume.add_argument("--prefix", default="retail/v1")
    consume.add_argument("--client-id", help="stable id of this instance, so a restart resumes its session")
    consume.set_defaults(handler=_cmd_hq_consume)
    fleet = commands.add_parser("simulate-fleet", help="N virtual stores against a broker, HQ consuming them")
    fleet.add_argument("--stores", type=int, required=True)
    fleet.add_argument(
        "--broker",
        required=True,
        type=_broker_address,
        metavar="HOST:PORT",
        help="HOST:PORT of an MQTT v5 broker (shared subscriptions)",
    )
    fleet.add_argument("--rate", type=float, default=10.0, help="events per store per second (default 10)")
    fleet.add_argument("--seconds", type=float, default=10.0, help="how long to offer that load (default 10)")
    fleet.add_argument("--burst", type=int, default=0, help="instead: this many events per store at once")
    fleet.add_argument("--consumers", type=int, default=2, help="HQ consumer instances in the group")
    fleet.set_defaults(handler=_cmd_simulate_fleet)
    hq_report = hq_commands.add_parser(
        "report", help="per-store journey figures from the consumer's database"
    )
    hq_report.add_argument("--db", type=Path, required=True)
    hq_report.add_argument("--json", action="store_true")
    hq_report.set_defaults(handler=_cmd_hq_report)


def _add_simulation_commands(commands: argparse._SubParsersAction) -> None:
    """``simulate`` and ``evaluate``: how technicians and developers measure presence accuracy."""
    simulate = commands.add_parser(
        "simulate", help="simulate a store day from the layout in the config: trace + ground truth"
    )
    simulate.add_argument("--config", type=Path, help="store layout (default: the demo store)")
    simulate.add_argument("--out", type=Path, required=True, help="directory for trace.jsonl, truth.jsonl")
    simulate.add_argument("--shoppers", type=int, default=300)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--sigma", type=float, default=4.0, help="log-normal shadowing, dB (default 4)")
    simulate.add_argument("--loss", type=float, default=0.1, help="packet loss per receiver (default 0.1)")
    simulate.add_argument("--app-share", type=float, default=0.3, help="shoppers with the app (default 0.3)")
    simulate.set_defaults(handler=_cmd_simulate)

    evaluate = commands.add_parser("evaluate", help="score the agent on a simulated trace against its truth")
    evaluate.add_argument("trace", type=Path)
    evaluate.add_argument("truth", type=Path)
    evaluate.add_argument("--config", type=Path, help="agent configuration (default: the demo store)")
    evaluate.add_argument("--filter", choices=["kalman", "median", "none"], help="override presence.filter")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(handler=_cmd_evaluate)


def _configure_logging(level: str) -> None:
    # Under systemd the journal stamps time itself; elsewhere a timestamp helps.
    under_journal = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journal
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    # APScheduler logs every job run at INFO: with a 1 s tick that would drown the journal.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415 - keep start-up of other commands lean

    config = load_config(args.file)
    print(f"{args.file}: valid (store {config.store.id}, {len(config.receivers)} receivers)")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config, render_toml  # noqa: PLC0415

    sys.stdout.write(render_toml(load_config(args.file)))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.daemon.service import Service  # noqa: PLC0415

    service = Service(load_config(args.config), config_path=args.config)
    if args.trace:
        service.add_trace_source(args.trace)
    return service.run_forever()


def _cmd_scan(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.core.settings import BleSettings  # noqa: PLC0415
    from edge_agent.tools.scan import run_scan  # noqa: PLC0415

    settings = BleSettings()
    receivers: list[tuple[str, str]] = []
    if args.config:
        config = load_config(args.config)
        settings = config.ble
        receivers = [(r.id, r.adapter) for r in config.receivers if r.adapter]
    receivers += [(adapter, adapter) for adapter in args.adapter]
    if not receivers:
        print(
            "nothing to scan: give --adapter hciN, or --config with a receiver that has an adapter",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.throttle is not None:
        settings = settings.model_copy(update={"throttle_s": args.throttle})
    view = run_scan(
        receivers, settings, Console(), duration=args.duration, record=args.record, raw=args.record_raw
    )
    if args.record:
        print(
            f"recorded {sum(r.sightings for r in view.rows.values())} sightings to {args.record}",
            file=sys.stderr,
        )
    return 0


def _cmd_journey(args: argparse.Namespace) -> int:
    import zoneinfo  # noqa: PLC0415
    from datetime import date, datetime, time, timedelta  # noqa: PLC0415

    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.storage.statusview import StatusUnavailable, journey_lines, read_journey  # noqa: PLC0415

    config = load_config(args.config)
    tz = zoneinfo.ZoneInfo(config.store.timezone)
    since, until = 0.0, float("inf")
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            print(f"--date expects YYYY-MM-DD, got {args.date!r}", file=sys.stderr)
            return EXIT_USAGE
        since = datetime.combine(day, time(0), tz).timestamp()
        until = datetime.combine(day + timedelta(days=1), time(0), tz).timestamp()
    try:
        rows = read_journey(config.storage.path, args.customer_id, since, until)
    except StatusUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if not rows:
        print(f"no journey kept for {args.customer_id}" + (f" on {args.date}" if args.date else ""))
        return 0
    print("\n".join(journey_lines(args.customer_id, config.store.id, config.store.timezone, rows)))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from edge_agent import __version__  # noqa: PLC0415
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.storage.statusview import StatusUnavailable, read_status  # noqa: PLC0415

    config = load_config(args.config)
    now = time.time()
    try:
        status = read_status(config.storage.path, now)
    except StatusUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    snapshot = status.pop("snapshot")
    heartbeat_age = _age(snapshot.get("ts"), now)
    status |= {
        "agent_version": snapshot.get("agent_version", __version__),
        "last_heartbeat_s": heartbeat_age,
        # Three missed heartbeats: the daemon is stopped or stuck.
        "daemon": "unknown" if heartbeat_age is None
        else ("running" if heartbeat_age <= 3 * config.scheduler.heartbeat_interval_s else "not reporting"),
        "link": snapshot.get("link", "unknown"),
        "last_sync_s": _age(snapshot.get("last_sync"), now),
        "open_visits": snapshot.get("open_visits"),
        "missing_beacons": snapshot.get("missing_beacons", []),
        "scanners": snapshot.get("scanners", []),
    }  # fmt: skip
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for key in ("daemon", "agent_version", "link", "last_sync_s", "last_heartbeat_s", "queue_depth",
                "queue_by_priority", "oldest_queued_s", "open_visits", "registry_size", "registry_version",
                "missing_beacons"):  # fmt: skip
        print(f"{key:<18} {status[key]}")
    for scanner in status["scanners"]:
        state = "running" if scanner["running"] else "DOWN"
        print(
            f"scanner {scanner['receiver']}/{scanner['adapter']}: {state}, mode {scanner['mode']}, "
            f"{scanner['watchdog_restarts']} restarts, {scanner['errors']} errors"
        )
    return 0


def _age(iso: str | None, now: float) -> float | None:
    from datetime import datetime  # noqa: PLC0415

    return None if not iso else round(now - datetime.fromisoformat(iso).timestamp(), 1)


def _cmd_replay(args: argparse.Namespace) -> int:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.tools.replay import DEFAULT_SEED, read_downlink_file, replay  # noqa: PLC0415

    config = load_config(args.config)
    downlinks: list[tuple[str, bytes]] = []
    timed: list[tuple[str, bytes, str]] = []
    for spec in args.downlink:
        kind, sep, target = spec.partition("=")
        file, _, when = target.rpartition("@") if "@" in target else (target, "", "")
        if not sep or not kind or not file or (when and not _is_when(when)):
            print(f"--downlink expects KIND=FILE or KIND=FILE@WHEN (seconds or +seconds), got {spec!r}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        try:
            payloads = read_downlink_file(Path(file))
        except OSError as exc:
            print(f"cannot read downlink file {file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        if when:
            timed.extend((kind, payload, when) for payload in payloads)
        else:
            downlinks.extend((kind, payload) for payload in payloads)
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


def _is_when(text: str) -> bool:
    try:
        float(text.removeprefix("+"))
    except ValueError:
        return False
    return True


class _output:  # noqa: N801 - used as a context manager like open()
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


def _layout_config(path: Path | None) -> AgentConfig:
    from edge_agent.adapters.configfile import load_config  # noqa: PLC0415
    from edge_agent.tools.demo import demo_config  # noqa: PLC0415

    return load_config(path) if path else demo_config()


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge_agent.tools.simfiles import write_simulation  # noqa: PLC0415
    from edge_agent.tools.simulate import LayoutIncomplete, SimulationSettings, simulate_store_day  # noqa: PLC0415

    config = _layout_config(args.config)
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
    command = (
        " ".join(["edge-agent", *sys.argv[1:]]) if sys.argv[1:2] == ["simulate"] else "edge-agent simulate"
    )
    sightings, visits = write_simulation(simulation, args.out, command)
    config_arg = f" --config {args.config}" if args.config else ""
    print(f"wrote {sightings:,} sightings of {visits} shoppers to {args.out}")
    print(f"score it: edge-agent evaluate {args.out / 'trace.jsonl'} {args.out / 'truth.jsonl'}{config_arg}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge_agent.core.trace import TraceProblem  # noqa: PLC0415
    from edge_agent.tools.evaluate import run_core, score  # noqa: PLC0415
    from edge_agent.tools.simfiles import TruthFileError, read_trace_file, read_truth  # noqa: PLC0415

    config = _layout_config(args.config)
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


def _cmd_hq_consume(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from edge_agent.hq.consumer import HqConsumer  # noqa: PLC0415

    host, port = args.broker
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = HqConsumer(
        host, port, args.group, args.db, prefix=args.prefix, client_id=args.client_id
    ).start()
    logging.getLogger(__name__).info("hq consumer %s in group %s -> %s", consumer.name, args.group, args.db)
    try:
        while not stop.wait(10):
            s = consumer.stats
            logging.getLogger(__name__).info(
                "received=%d stored=%d duplicates=%d rejected=%d",
                s.received,
                s.stored,
                s.duplicates,
                s.rejected,
            )
    except KeyboardInterrupt:
        pass
    consumer.stop()
    return 0


def _cmd_simulate_fleet(args: argparse.Namespace) -> int:
    from edge_agent.tools.fleet import run_fleet  # noqa: PLC0415

    host, port = args.broker
    if args.stores < 1 or args.consumers < 1 or args.rate <= 0 or args.seconds <= 0 or args.burst < 0:
        print("--stores, --consumers >= 1; --rate, --seconds > 0; --burst >= 0", file=sys.stderr)
        return EXIT_USAGE
    result = run_fleet(
        host,
        port,
        args.stores,
        rate=args.rate,
        seconds=args.seconds,
        consumers=args.consumers,
        burst=args.burst,
    )
    r = result
    print(
        f"{r.stores} stores, {r.consumers} HQ consumers: {r.delivered}/{r.events} events in "
        f"{r.seconds:.1f} s = {r.messages_per_s:,.0f} msg/s end to end; outbox -> HQ database "
        f"p50 {r.latency_p50_ms:.0f} ms, p99 {r.latency_p99_ms:.0f} ms, max {r.latency_max_ms:.0f} ms"
    )
    return 0 if result.delivered == result.events else 1


def _cmd_hq_report(args: argparse.Namespace) -> int:
    from edge_agent.hq.consumer import report  # noqa: PLC0415

    if not args.db.exists():
        print(f"no such database: {args.db}", file=sys.stderr)
        return EXIT_USAGE
    figures = report(args.db)
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
        return 0
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"HQ report from {args.db}")
    columns = ("store", "status", "visits", "mean visit", "top zones by dwell", "footfall", "notifications",
               "suppressed", "C&C collected (median wait)", "conversion", "gaps")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for store_id, f in sorted(figures.items()):
        zones = sorted(f["zone_dwell_s"].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            store_id, str(f["status"]), str(f["visits"]),
            f"{f['visit_seconds'] / f['visits'] / 60:.1f} min" if f["visits"] else "-",
            ", ".join(f"{z} {s / 60:.0f} min" for z, s in zones) or "-", str(f["footfall_entries"]),
            ", ".join(f"{k} {n}" for k, n in sorted(f["notifications_sent"].items())) or "-",
            ", ".join(f"{k} {n}" for k, n in sorted(f["notifications_suppressed"].items())) or "-",
            f"{f['collections']} ({(f['arrival_to_collection_median_s'] or 0) / 60:.1f} min)",
            "-" if f["conversion"] is None else f"{f['conversion']:.0%}",
            str(sum(g["missing"] for g in f["gaps"])),
        )  # fmt: skip
    Console().print(table)
    return 0


def _cmd_schema_export(args: argparse.Namespace) -> int:
    from edge_agent.hq.contract import export  # noqa: PLC0415

    prefix = _layout_config(args.config).mqtt.topic_prefix
    for path in export(args.directory, prefix):
        print(path)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    from edge_agent.tools.demo import print_summary, run_demo  # noqa: PLC0415

    console = Console()
    if not 2 <= args.hours <= 14:
        print("--hours must be between 2 and 14", file=sys.stderr)
        return EXIT_USAGE
    if args.export:
        return _export_demo_day(args)
    try:
        result = run_demo(
            args.broker,
            args.config,
            seed=args.seed,
            shoppers=args.shoppers,
            console=console,
            hours=args.hours,
        )
    except RuntimeError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    print_summary(result, console)
    return 0 if result.published > 0 and result.lost == 0 else 1


def _export_demo_day(args: argparse.Namespace) -> int:
    from edge_agent.core.trace import format_trace_line  # noqa: PLC0415
    from edge_agent.tools.storeday import generate  # noqa: PLC0415

    out: Path = args.export
    out.mkdir(parents=True, exist_ok=True)
    day = generate(
        seed=args.seed,
        shoppers=args.shoppers,
        app_customers=max(1, args.shoppers // 8),
        open_hours=(9, 9 + args.hours),
    )
    with (out / "trace.jsonl").open("w", encoding="utf-8") as trace:
        trace.write(
            f"# edge-agent synthetic store day: seed {args.seed}, {args.shoppers} shoppers, {args.hours} h\n"
            f"# made by: edge-agent demo --export DIR --seed {args.seed} --shoppers {args.shoppers} "
            f"--hours {args.hours}\n"
        )
        for sighting in day.sightings:
            trace.write(format_trace_line(sighting) + "\n")
    for kind, payload in day.downlinks:
        (out / f"{kind}.jsonl").write_bytes(payload + b"\n")
    print(f"wrote {len(day.sightings)} sightings and {len(day.downlinks)} downlinks to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
