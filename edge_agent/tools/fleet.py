"""Many virtual stores against one broker, and HQ consuming them: load tests for HQ.

``edge-agent simulate-fleet --stores N --broker HOST:PORT`` runs N virtual stores in this
process, each with the real parts of a store that matter to HQ: its own SQLite outbox (WAL,
synchronous=FULL) and its own MQTT link (paho driven by one link thread, bounded in-flight window).
A driver adds events to every outbox at ``rate`` per store per second for ``seconds`` (or a
``burst`` per store at once, a backlog after an outage); a group of HQ reference consumers
(``hq``), each in a process of its own as HQ runs them, stores them in a SQLite file or in
PostgreSQL (``db``). Reported: messages per second end to end (all events from the first
enqueue to the last HQ commit) and the latency from a message's creation in the store's outbox
to its commit in the HQ database (p50, p99, max).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.adapters.clock import SYSTEM_CLOCK
from edge_agent.adapters.link import MqttLink
from edge_agent.core.events import FootfallMessage, utc
from edge_agent.core.settings import AgentConfig
from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.assembly import Broker, assemble, offline_copy
from edge_agent.hq.consumer import HqConsumer
from edge_agent.hq.store import DatabaseTarget

STORES_PER_PROCESS = 100
TICK_S = 0.2  # each store commits its events in groups this often, as the daemon's main loop does


@dataclass(frozen=True, slots=True)
class FleetResult:
    stores: int
    events: int
    delivered: int
    seconds: float
    messages_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    consumers: int
    # CPU seconds from the start of the load to its end (all threads): where the time goes.
    consumer_cpu_s: float = 0.0
    store_cpu_s: float = 0.0


class VirtualStore:
    def __init__(self, store_id: str, host: str, port: int, workdir: Path) -> None:
        config: AgentConfig = config_from_mapping(
            {"store": {"id": store_id}, "mqtt": {"reconnect_min_s": 0.1, "reconnect_max_s": 1.0}}
        )
        self.agent = assemble(
            offline_copy(config, workdir / f"{store_id}.db"), SYSTEM_CLOCK, Broker(host, port)
        )
        self.config = self.agent.config
        self.outbox = self.agent.outbox
        self.ids = self.agent.pipeline.ids
        assert self.agent.link is not None  # a broker was given
        self.link: MqttLink = self.agent.link
        self.added = 0

    def add(self, count: int) -> None:
        now = self.agent.clock.wall()
        messages = [
            FootfallMessage(
                **self.agent.pipeline.envelope.at(now), interval_start=utc(now - 60),
                interval_end=utc(now), entries=1, exits=0, occupancy=1, customers_recognised=0,
            )
            for _ in range(count)
        ]  # fmt: skip
        self.outbox.add(messages, now)
        self.added += count
        self.link.wake()

    def close(self) -> None:
        self.agent.close(2.0)


def run_fleet(
    host: str,
    port: int,
    stores: int,
    rate: float = 10.0,
    seconds: float = 10.0,
    consumers: int = 2,
    timeout: float = 300.0,
    burst: int = 0,
    db: DatabaseTarget | None = None,
) -> FleetResult:
    """Paced load (``rate`` events per store per second for ``seconds``), or with ``burst`` that
    many events per store at once: the fleet's backlog after an HQ outage, which measures capacity.

    Stores run in worker processes of at most ``STORES_PER_PROCESS``, one interpreter (and GIL)
    per hundred links; real stores are separate machines anyway. (Measured with paho's own loop
    thread, which waits with select() and cannot watch descriptors above 1024: one process stalled
    at 140 stores. The link now polls its socket itself, which has no such limit.)
    Each HQ consumer is a process too: instances in one interpreter would share one GIL, and
    adding them would measure that. ``db``: HQ's database, by default a SQLite file made for
    the run.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with tempfile.TemporaryDirectory(prefix="edge-agent-fleet-") as workdir:
        work = Path(workdir)
        ids = [f"fleet-{i + 1:04d}" for i in range(stores)]
        chunks = [ids[i : i + STORES_PER_PROCESS] for i in range(0, stores, STORES_PER_PROCESS)]
        ready = context.Barrier(len(chunks) + 1)
        go, done = context.Event(), context.Event()
        added: multiprocessing.Queue[int] = context.Queue()
        store_cpu: multiprocessing.Queue[float] = context.Queue()
        workers = [
            context.Process(
                target=_worker, args=(host, port, chunk, work, rate, seconds, burst, ready, go, done, added,
                      store_cpu),
                daemon=True,
            )
            for chunk in chunks
        ]  # fmt: skip
        # A group and client ids of this run only: a broker keeps a stopped instance's session
        # and would queue this run's messages for a member that never comes back.
        tag = f"{os.getpid()}-{time.monotonic_ns():x}"
        target = db if db is not None else work / "hq.db"
        stop = context.Event()
        results: multiprocessing.Queue[tuple[int, list[float], float]] = context.Queue()
        counters = [context.Value("q", 0) for _ in range(consumers)]
        subscribed = [context.Event() for _ in range(consumers)]
        group = [
            context.Process(
                target=_consumer,
                args=(host, port, f"fleet-{tag}", f"hq-fleet-{tag}-{i}", target, counters[i], subscribed[i],
                      stop, results),
                daemon=True,
            )
            for i in range(consumers)
        ]  # fmt: skip
        outcomes: list[tuple[int, list[float], float]] = []
        store_cpu_s = 0.0
        total = 0
        try:
            for consumer in group:
                consumer.start()
            for ready_event in subscribed:
                if not ready_event.wait(30):
                    raise RuntimeError("HQ consumer did not subscribe within 30 s")
            for worker in workers:
                worker.start()
            ready.wait(120)  # every store connected
            started = time.monotonic()
            go.set()
            total = sum(added.get(timeout=seconds + 120) for _ in workers)
            deadline = time.monotonic() + timeout
            while sum(c.value for c in counters) < total and time.monotonic() < deadline:
                time.sleep(0.05)  # a load test's progress poll, not synchronisation between tested parts
            elapsed = time.monotonic() - started
        finally:
            done.set()
            store_cpu_s = sum(_collect(store_cpu, sum(w.pid is not None for w in workers)))
            for worker in workers:
                if worker.pid is not None:  # started
                    worker.join(30)
            stop.set()
            outcomes = _collect(results, sum(c.pid is not None for c in group))
            for consumer in group:
                if consumer.pid is not None:
                    consumer.join(30)
    latencies = sorted(latency for _, sampled, _ in outcomes for latency in sampled)
    delivered = sum(stored for stored, _, _ in outcomes)
    return FleetResult(
        stores=stores, events=total, delivered=delivered, seconds=elapsed,
        messages_per_s=delivered / elapsed if elapsed else 0.0,
        latency_p50_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
        latency_p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        latency_max_ms=1000 * latencies[-1] if latencies else float("nan"),
        consumers=consumers, consumer_cpu_s=sum(cpu for _, _, cpu in outcomes), store_cpu_s=store_cpu_s,
    )  # fmt: skip


def _worker(
    host: str, port: int, store_ids: list[str], work: Path, rate: float, seconds: float, burst: int,
    ready: Any, go: Any, done: Any, added: Any, cpu: Any,
) -> None:  # fmt: skip
    fleet = [VirtualStore(store_id, host, port, work) for store_id in store_ids]
    try:
        for store in fleet:
            store.link.start()
        for store in fleet:
            if not store.link.wait_connected(60):
                raise RuntimeError(f"{store.config.store.id} did not connect within 60 s")
        ready.wait(120)
        go.wait()
        started = time.process_time()
        if burst:
            for store in fleet:
                store.add(burst)
        else:
            _drive(fleet, rate, seconds)
        added.put(sum(store.added for store in fleet))
        done.wait()
        cpu.put(time.process_time() - started)
    finally:
        for store in fleet:
            store.close()


def _drive(fleet: list[VirtualStore], rate: float, seconds: float) -> None:
    """Every store adds ``rate * TICK_S`` events per tick (carrying fractions) for ``seconds``."""
    per_tick = rate * TICK_S
    owed = [0.0] * len(fleet)
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    stop = threading.Event()
    while time.monotonic() < end:
        for index, store in enumerate(fleet):
            owed[index] += per_tick
            whole = int(owed[index])
            if whole:
                store.add(whole)
                owed[index] -= whole
        next_tick += TICK_S
        stop.wait(max(0.0, next_tick - time.monotonic()))


def _consumer(
    host: str, port: int, group: str, client_id: str, db: DatabaseTarget, stored: Any, subscribed: Any,
    stop: Any, results: Any,
) -> None:  # fmt: skip
    """One HQ consumer instance: its stored count published as it goes, its figures at the end."""
    consumer = HqConsumer(host, port, group, db, client_id=client_id).start()
    started = time.process_time()
    try:
        if consumer.subscribed.wait(30):
            started = time.process_time()
            subscribed.set()
        while not stop.wait(0.02):
            stored.value = consumer.stats.stored
    finally:
        consumer.stop(end_session=True)
        stored.value = consumer.stats.stored
        results.put((consumer.stats.stored, consumer.stats.latency_s, time.process_time() - started))


def _collect(results: Any, count: int) -> list[Any]:
    """What ``count`` processes report; one that died (and never reported) counts nothing."""
    outcomes = []
    for _ in range(count):
        try:
            outcomes.append(results.get(timeout=30))
        except queue.Empty:
            break
    return outcomes
