"""``edge-agent demo``: a synthetic store day through the real pipeline, outbox and MQTT link.

HQ's side is played by a subscriber on the same broker: it publishes the customer registry and
orders as downlinks, then counts what arrives. Nothing is faked between them: the agent
validates the downlinks, commits every event to SQLite, and deletes a row only after PUBACK.
``export_demo_day`` writes the same day's trace and downlinks as files instead (``--export``).
At the end, what HQ received is stored as the HQ consumer stores it and drawn as the journey
report (``edge-agent hq report --html``) with the demo store's floor plan.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge_agent.adapters.clock import simulated_wall
from edge_agent.adapters.configfile import load_config
from edge_agent.adapters.link import DownlinkDelivery, MqttLink
from edge_agent.core.address import parse_host_port
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.topics import Topics
from edge_agent.core.trace import format_trace_line
from edge_agent.daemon.assembly import Broker, Wiring, assemble, offline_copy
from edge_agent.hq.consumer import Incoming, classify
from edge_agent.hq.html_report import render_report
from edge_agent.hq.journey_figures import StoreLayout, decoded, journey_figures
from edge_agent.hq.store import open_store
from edge_agent.storage.journeyview import journey_lines, read_journey
from edge_agent.tools.embedded_broker import EmbeddedBroker
from edge_agent.tools.simclock import SimulatedRun, SimulatedTime
from edge_agent.tools.storeday import StoreDay, demo_config, generate

_LOGGER = logging.getLogger(__name__)
DELIVERY_DEADLINE_S = 120.0
# One fixed place, so the path the demo prints is the same every run.
REPORT_PATH = Path(tempfile.gettempdir()) / "edge-agent-demo" / "journey-report.html"


class HqObserver:
    """What HQ sees: every message under the store's prefix, decoded."""

    def __init__(self, host: str, port: int, prefix: str, protocol: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="hq-observer",
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.connect(host, port)
        self._client.subscribe(f"{prefix}/stores/+/+/#", qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("HQ observer could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = {}
        with self._lock:
            self.messages.append((message.topic, payload))

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def event_ids(self) -> set[str]:
        with self._lock:
            return {p.get("event_id", "") for t, p in self.messages if not t.endswith("/status")}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(slots=True)
class DemoResult:
    sightings: int = 0
    published: int = 0
    received: Counter[str] = field(default_factory=Counter)
    customer_visits: int = 0
    footfall_entries: int = 0
    notifications: Counter[str] = field(default_factory=Counter)
    # What the journey rules did, by the summary's row name (JOURNEY_ROWS).
    rules: Counter[str] = field(default_factory=Counter)
    rejected_downlinks: int = 0
    sample_notification: str = ""
    example_journey: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lost: int = 0
    hq_messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)
    report_path: Path | None = None


def run_demo(
    broker: str | None = None,
    config_path: Path | None = None,
    seed: int = 7,
    shoppers: int = 240,
    console: Console | None = None,
    hours: int = 12,
    report_path: Path = REPORT_PATH,
    hq_db: Path | None = None,
) -> DemoResult:
    """The demo day; at the end, the journey report at ``report_path`` from an HQ database that
    is kept at ``hq_db`` when given (else it goes with the run's temporary directory)."""
    console = console or Console()
    config = load_config(config_path) if config_path else demo_config()
    started = time.monotonic()
    embedded = None
    if broker is None:
        embedded = EmbeddedBroker().start()
        host, port = embedded.host, embedded.port
        console.print(f"[dim]embedded MQTT broker on {host}:{port} (MQTT 3.1.1)[/dim]")
    else:
        host, port = parse_host_port(broker, default_host="127.0.0.1")
    try:
        with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as workdir:
            config = offline_copy(config, Path(workdir) / "agent.db")
            result = _run(config, Broker(host, port), (seed, shoppers, hours), console)
            hq_path = hq_db or Path(workdir) / "hq.db"
            result.report_path = _journey_report(config, result.hq_messages, hq_path, report_path)
    finally:
        if embedded is not None:
            embedded.stop()
    result.seconds = time.monotonic() - started
    return result


def _run(
    config: AgentConfig, broker: Broker, day_shape: tuple[int, int, int], console: Console
) -> DemoResult:
    seed, shoppers, hours = day_shape
    day = generate(seed=seed, timezone=config.store.timezone, shoppers=shoppers,
                   app_customers=max(1, shoppers // 8), open_hours=(9, 9 + hours),
                   rotation_exponent=config.identity.rotation_exponent)  # fmt: skip
    agent = _DemoAgent(config, broker, day.sightings[0].ts)
    hq = HqObserver(broker.host, broker.port, config.mqtt.topic_prefix, config.mqtt.protocol)
    result = DemoResult()
    try:
        agent.connect()
        # HQ sends the registry and the orders; the agent applies them as they arrive.
        for kind, payload in day.downlinks:
            hq.publish(agent.pipeline.topics.downlink(kind), payload)
        agent.apply_downlinks(expected=len(day.downlinks))
        console.print(
            f"HQ sent {len(day.downlinks)} downlinks; registry holds {len(agent.pipeline.core.customers)} "
            f"customers, {len(agent.pipeline.core.orders)} orders"
        )
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        ) as progress:  # fmt: skip
            result.sightings = agent.replay(day.sightings, progress, day.timed)
            agent.deliver(hq, progress)
        result.published = agent.link.stats.acknowledged
        result.lost = agent.pipeline.outbox.depth()
        result.example_journey = _example_journey(config, day)
        result.rejected_downlinks = agent.pipeline.counters["downlinks_rejected"]
        # Kept in the store's journey log, not sent to HQ: counted where they are written.
        result.rules["rules that did not act (in the journey log)"] = agent.pipeline.counters[
            "rules_not_fired"
        ]
    finally:
        agent.close()
        hq.close()
    _summarise(hq.messages, result)
    result.hq_messages = hq.messages
    return result


def _journey_report(
    config: AgentConfig, messages: list[tuple[str, dict[str, Any]]], db_path: Path, out: Path
) -> Path | None:
    """Store what HQ received in an HQ database as ``hq consume`` does (validated, once per
    event_id), then write the journey report of that database, as ``hq report --html`` does."""
    layout = StoreLayout.from_config(config)
    store = open_store(db_path)
    try:
        arrived = time.time()
        # The consumer's own validation and storing, so the report reads what a real HQ would hold.
        incoming = [
            Incoming(topic, json.dumps(payload).encode(), 0, 0, arrived)
            for topic, payload in messages
            if not _is_downlink(topic)
        ]
        store.write(classify(incoming, "hq-demo"))
        figures = journey_figures(decoded(store.events()), {config.store.id: layout}, store.gaps())
    finally:
        store.close()
    page = render_report(
        figures,
        {layout.store_id: layout},
        title="Journey report: the demo store day",
        source="the demo's HQ database",
    )
    partial = out.with_name(f".{out.name}.{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(page, encoding="utf-8")
        partial.replace(out)  # whole or not at all, should two demos run at once
    except OSError as exc:  # the day itself went well: say so, and why there is no page
        _LOGGER.warning("could not write the journey report to %s: %s", out, exc)
        return None
    return out


def _is_downlink(topic: str) -> bool:
    parsed = Topics.store_and_stream(topic)
    return parsed is not None and parsed[1].startswith("in/")


def _example_journey(config: AgentConfig, day: StoreDay) -> list[str]:
    """What ``edge-agent journey`` would print for a click-and-collect customer of the day."""
    for customer in sorted(day.customers, key=lambda c: c.customer_id):
        if not customer.order_id or not customer.consent_service:
            continue
        rows = read_journey(config.storage.path, customer.customer_id, 0.0, float("inf"))
        if any(kind == "order" for _, _, kind, _ in rows):
            command = f"$ edge-agent journey {customer.customer_id} --config demo.toml"
            return [
                command,
                *journey_lines(customer.customer_id, config.store.id, config.store.timezone, rows),
            ]
    return []


class _DemoAgent:
    """The agent's real parts (pipeline, SQLite outbox, MQTT link) on a simulated clock."""

    def __init__(self, config: AgentConfig, broker: Broker, day_start: float) -> None:
        self._day_start = day_start
        self._downlinks: queue.Queue[DownlinkDelivery] = queue.Queue()
        self.time = SimulatedTime(day_start)  # moved on by the replay
        self.agent = assemble(
            config, simulated_wall(self.time.wall), broker, Wiring(on_downlink=self._downlinks.put)
        )
        self.pipeline = self.agent.pipeline
        assert self.agent.link is not None  # a broker was given
        self.link: MqttLink = self.agent.link
        self._handed_over = 0  # outbox messages the link has been given time to deliver

    def connect(self) -> None:
        self.link.start()
        if not self.link.wait_connected(15):
            broker = self.agent.config.mqtt
            raise RuntimeError(f"could not connect to the MQTT broker at {broker.host}:{broker.port}")

    def apply_downlinks(self, expected: int = 0, timeout: float = 15.0) -> None:
        """Apply what the link delivered; wait (bounded) until ``expected`` have been applied."""
        deadline = time.monotonic() + timeout
        applied = 0
        while True:
            try:
                wait = max(0.01, deadline - time.monotonic()) if applied < expected else None
                delivery = self._downlinks.get(timeout=wait) if wait else self._downlinks.get_nowait()
            except queue.Empty:
                if applied < expected:
                    raise RuntimeError("the downlinks HQ sent did not come back from the broker") from None
                return
            self.pipeline.downlink(delivery.topic, delivery.payload, self._day_start)
            self.link.ack_downlink(delivery.mid, delivery.qos)
            applied += 1

    def replay(
        self, sightings: list[Sighting], progress: Progress, timed: Sequence[tuple[float, str, bytes]] = ()
    ) -> int:
        """The day's sightings, and HQ's downlinks of the day (``timed``) at their moments."""
        task = progress.add_task("store day", total=len(sightings))

        def after_batch() -> None:
            self._deliver_committed()
            if driver.report.last_ts is not None:
                # The wall clock follows the sightings, not the ticks that close the day after
                # them: a notification's expiry is judged against the shopper's time.
                self.time.now = driver.report.last_ts
            self.apply_downlinks()
            self.link.wake()
            progress.update(task, completed=driver.report.sightings)

        driver = SimulatedRun(self.pipeline, after_batch=after_batch)
        for when, kind, payload in timed:
            driver.at(
                when, functools.partial(self.pipeline.downlink, self.pipeline.topics.downlink(kind), payload)
            )
        driver.feed(sightings)
        driver.finish()
        progress.update(task, completed=len(sightings))
        return driver.report.sightings

    def _deliver_committed(self) -> None:
        """Let the link hand HQ what the day has committed before the simulated clock moves on.

        The day runs at hours a second, so a notification's TTL (minutes of the shopper's time) is
        milliseconds here: without this wait, whether the link thread got to a notification before
        the clock passed its expiry would depend on how busy the machine is, and so would the
        demo's figures. A real store's link has the real minutes."""
        outbox, stats = self.pipeline.outbox, self.link.stats
        if outbox.enqueued == self._handed_over:
            return
        self.link.wake()
        deadline = time.monotonic() + DELIVERY_DEADLINE_S
        while stats.acknowledged + sum(outbox.dropped.values()) < outbox.enqueued:
            if time.monotonic() > deadline or not self.link.connected:
                return  # deliver() reports what is left
            time.sleep(0.001)  # the link thread acknowledges within a few ms on loopback
        self._handed_over = outbox.enqueued

    def deliver(self, hq: HqObserver, progress: Progress) -> None:
        """Wait (bounded) until the outbox is empty and HQ has seen every acknowledged event."""
        stats = self.link.stats
        task = progress.add_task("delivered to HQ", total=self.pipeline.outbox.enqueued)
        deadline = time.monotonic() + DELIVERY_DEADLINE_S
        while time.monotonic() < deadline:
            self.link.wake()
            progress.update(task, completed=stats.acknowledged)
            drained = self.pipeline.outbox.depth() == 0 and self.link.inflight == 0
            if drained and len(hq.event_ids()) >= stats.acknowledged:
                return
            time.sleep(0.05)  # refreshes the progress bar; the loop is bounded by the deadline

    def close(self) -> None:
        self.agent.close()


def _summarise(messages: list[tuple[str, dict[str, Any]]], result: DemoResult) -> None:
    for topic, payload in messages:
        parsed = Topics.store_and_stream(topic)
        stream = parsed[1] if parsed is not None else topic
        if stream.startswith("in/"):
            continue  # HQ's own downlinks, echoed by the broker
        result.received[stream] += 1
        schema = payload.get("schema")
        if schema == "visit.v1" and payload.get("phase") == "started":
            result.customer_visits += 1
        elif schema == "footfall.v1":
            result.footfall_entries += int(payload.get("entries", 0))
        elif schema == "notification.v1":
            result.notifications[payload.get("audience", "?")] += 1
            if not result.sample_notification and payload.get("audience") == "customer":
                result.sample_notification = payload.get("text", "")
        row = _journey_row(schema, payload)
        if row is not None:
            result.rules[row] += 1
        if schema == "outcome.v1" and payload.get("success") is not None:
            result.rules["outcomes decided"] += 1
            result.rules["outcomes that worked"] += bool(payload["success"])


# The summary's rows for the journey rules, in order; each counts the messages ``_journey_row``
# names (outcomes are counted apart: decided, and of those, worked).
JOURNEY_ROWS = (
    "C&C counter waits (staff)", "C&C left uncollected", "assistance alerts (staff)",
    "queue alerts (staff)", "loyalty check-ins", "coupons redeemed", "outcomes decided",
    "outcomes that worked", "rules that did not act (in the journey log)",
)  # fmt: skip


def _journey_row(schema: object, payload: dict[str, Any]) -> str | None:
    template = payload.get("template")
    if schema == "notification.v1" and template == "staff.counter_wait":
        return "C&C counter waits (staff)"
    if schema == "order.v1" and payload.get("phase") == "left_uncollected":
        return "C&C left uncollected"
    if schema == "notification.v1" and template == "staff.assist":
        return "assistance alerts (staff)"
    if schema == "staff_alert.v1" and template == "staff.queue":
        return "queue alerts (staff)"
    return {"check_in.v1": "loyalty check-ins", "redemption.v1": "coupons redeemed"}.get(str(schema))


def print_summary(result: DemoResult, console: Console) -> None:
    table = Table(title="What HQ received", show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("sightings replayed", result.sightings),
        ("customer visits recognised", result.customer_visits),
        ("footfall entries (all shoppers)", result.footfall_entries),
        ("notifications to customers", result.notifications["customer"]),
        ("notifications to staff", result.notifications["staff"]),
        *((name, result.rules[name]) for name in JOURNEY_ROWS),
        ("messages published (PUBACK received)", result.published),
        ("messages left in the outbox", result.lost),
    ]
    for stream, count in sorted(result.received.items()):
        rows.append((f"received on …/{stream}", count))
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    if result.sample_notification:
        console.print(f'example customer notification: "{result.sample_notification}"', soft_wrap=True)
    if result.example_journey:
        console.print("example journey, as support staff would see it:", markup=False)
        for line in result.example_journey:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"done in {result.seconds:.1f} s")
    if result.report_path is not None:
        console.print(f"journey report: {result.report_path}", markup=False, highlight=False, soft_wrap=True)


def export_demo_day(out: Path, seed: int, shoppers: int, hours: int) -> tuple[int, int]:
    """Write the demo's store day to ``out``: ``trace.jsonl`` (headed by how to make it again) and
    one ``KIND.jsonl`` per downlink, for ``edge-agent replay``. Returns (sightings, downlinks)."""
    out.mkdir(parents=True, exist_ok=True)
    day = generate(
        seed=seed, shoppers=shoppers, app_customers=max(1, shoppers // 8), open_hours=(9, 9 + hours)
    )
    with (out / "trace.jsonl").open("w", encoding="utf-8") as trace:
        trace.write(
            f"# edge-agent synthetic store day: seed {seed}, {shoppers} shoppers, {hours} h\n"
            f"# made by: edge-agent demo --export DIR --seed {seed} --shoppers {shoppers} --hours {hours}\n"
        )
        for sighting in day.sightings:
            trace.write(format_trace_line(sighting) + "\n")
    for kind, payload in day.downlinks:
        (out / f"{kind}.jsonl").write_bytes(payload + b"\n")
    return len(day.sightings), len(day.downlinks)
