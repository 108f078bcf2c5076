"""The one place that assembles the agent: database, outbox, pipeline, link and sources.

The daemon, replay, the demo, the fleet simulator and the benchmarks all build the stack here, so
they differ only in what they hand in: a configuration, a clock (the system's, or a simulated
wall clock), a broker address (or none: replay drains the outbox into a file) and the callbacks
through which whoever drives the agent receives downlinks and sightings. Each adapter gets its
own settings section and the store's one ``Topics``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.adapters.aes_worker import start_worker
from edge_agent.adapters.ble import BleRuntime, BleScanner
from edge_agent.adapters.link import DownlinkDelivery, MqttLink
from edge_agent.adapters.remote import RemoteReceivers
from edge_agent.core.cipher import REFERENCE
from edge_agent.core.clock import Clock
from edge_agent.core.events import StatusState
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.topics import Topics
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.storage.database import Database
from edge_agent.storage.outbox import Outbox


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the MQTT link connects; overrides ``mqtt.host``/``mqtt.port`` of the file (the
    demo's embedded broker, a test's mosquitto on a free port)."""

    host: str
    port: int

    @classmethod
    def of(cls, config: AgentConfig) -> Broker:
        return cls(config.mqtt.host, config.mqtt.port)


@dataclass(frozen=True, slots=True)
class Wiring:
    """How the driver of the agent hears from it.

    ``on_downlink``: a downlink the link received (apply it, then ``link.ack_downlink``).
    ``submit``: a sighting from a local scanner or a remote receiver; ``None`` builds no source.
    ``online_status``: the retained ``online`` status with the driver's figures (the daemon adds
    the link's and scanners'); ``None`` uses the pipeline's. The ``offline`` one (the last will,
    built with the link, before anything else exists) never needs figures.
    ``on_link_change``: the link came up or went down (told on the link thread: hand over only).
    """

    on_downlink: Callable[[DownlinkDelivery], None] = field(default=lambda delivery: None)
    submit: Callable[[Sighting], None] | None = None
    online_status: Callable[[], bytes] | None = None
    on_link_change: Callable[[], None] | None = None


@dataclass(slots=True)
class Agent:
    config: AgentConfig
    clock: Clock
    topics: Topics
    database: Database
    pipeline: Pipeline
    link: MqttLink | None
    remote: RemoteReceivers | None
    ble: BleRuntime | None

    @property
    def outbox(self) -> Outbox:
        return self.pipeline.outbox

    def close(self, timeout: float = 10.0) -> None:
        """Stop the link (committing PUBACKs in flight) and close the database."""
        if self.link is not None:
            self.link.stop(timeout)
        self.database.close()


def offline_copy(config: AgentConfig, database: Path) -> AgentConfig:
    """``config`` with its database at ``database`` and no disk reserve: what replay, the demo
    and the fleet simulator run on (a throwaway file, not the store's)."""
    storage = config.storage.model_copy(update={"path": database, "disk_reserve_bytes": 0})
    return config.model_copy(update={"storage": storage})


def assemble(
    config: AgentConfig,
    clock: Clock,
    broker: Broker | None,
    wiring: Wiring = Wiring(),
    *,
    ids: EventIdFactory | None = None,
    tables_in_slices: bool = False,
) -> Agent:
    """Build the agent for ``config``; nothing is started (``link.start()``, ``ble.start()``).

    ``broker=None`` builds no link (replay, offline tools). ``ids`` defaults to fresh random
    event ids; replay passes a seeded stream so the same trace gives the same output.
    ``tables_in_slices``: the driver calls ``pipeline.precompute`` when idle (the daemon's main
    loop), so token windows are built ahead in slices instead of when a sighting needs them.
    """
    topics = config.topics
    if broker is not None and (broker.host, broker.port) != (config.mqtt.host, config.mqtt.port):
        config = config.model_copy(
            update={"mqtt": config.mqtt.model_copy(update={"host": broker.host, "port": broker.port})}
        )
    database, pipeline = _open(config, clock, topics, ids or EventIdFactory(), tables_in_slices)
    try:
        remote = _remote(config, topics, clock, wiring.submit) if broker is not None else None
        link = None
        if broker is not None:
            online = wiring.online_status

            def status(state: StatusState) -> bytes:
                if state == "online" and online is not None:
                    return online()
                return pipeline.status(state, clock.wall()).to_json()

            link = MqttLink(
                config.mqtt, topics, pipeline.outbox, client_id=config.client_id,
                on_downlink=wiring.on_downlink, status_payload=status,
                sighting_filters=remote.topic_filters if remote is not None else (),
                on_sighting_message=remote.handle if remote is not None and remote.topic_filters else None,
                on_link_change=wiring.on_link_change, clock=clock,
            )  # fmt: skip
        ble = _ble(config, clock, wiring.submit)
    except BaseException:
        database.close()
        raise
    return Agent(config, clock, topics, database, pipeline, link, remote, ble)


def _open(
    config: AgentConfig, clock: Clock, topics: Topics, ids: EventIdFactory, tables_in_slices: bool
) -> tuple[Database, Pipeline]:
    """The database and the pipeline loaded from it.

    The daemon (``tables_in_slices``) starts faster: the window of now is encrypted in a worker
    process on the second core while the registry is read (where AES is fast enough to be worth
    a process: OpenSSL's), and the registry is read while the integrity check has its half
    second (``Database(defer_check=True)``). A file that check finds bad in that time is moved
    aside and a new one started, as a start that waited for the check does, before anything
    loaded from it is used."""
    cipher = fastest_cipher()
    worker = start_worker() if tables_in_slices and cipher is not REFERENCE else None
    path, reserve = config.storage.path, config.storage.disk_reserve_bytes
    try:
        database = Database(path, reserve, defer_check=tables_in_slices)
        try:
            pipeline = Pipeline(
                config, database, ids, cipher, topics=topics, clock=clock,
                tables_in_slices=tables_in_slices, aes_worker=worker,
            )  # fmt: skip
        except sqlite3.DatabaseError as exc:
            problem = database.settle_check()
            if problem is None:  # not what the check saw: a fault of its own
                database.close()
                raise
            problem += f" ({exc})"
        except BaseException:
            database.close()
            raise
        else:
            problem = database.settle_check()
    finally:
        if worker is not None:
            worker.close()  # done with (the load closes it) or never used
    if problem is None:
        return database, pipeline
    database.close()
    database = Database(path, reserve, found_bad=problem)  # moved aside, a new one, the alarm
    try:
        return database, Pipeline(
            config, database, ids, cipher, topics=topics, clock=clock, tables_in_slices=tables_in_slices
        )
    except BaseException:
        database.close()
        raise


def _remote(
    config: AgentConfig, topics: Topics, clock: Clock, submit: Callable[[Sighting], None] | None
) -> RemoteReceivers | None:
    if submit is None:
        return None
    return RemoteReceivers(config.remote, topics, [r.id for r in config.receivers], submit, clock)


def _ble(config: AgentConfig, clock: Clock, submit: Callable[[Sighting], None] | None) -> BleRuntime | None:
    """One bleak scanner per receiver that names a local adapter."""
    if submit is None:
        return None
    scanners = [
        BleScanner(receiver.id, receiver.adapter, submit, config.ble, clock, config.gatt)
        for receiver in config.receivers
        if receiver.adapter
    ]
    return BleRuntime(scanners) if scanners else None
