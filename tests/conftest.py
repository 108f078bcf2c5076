"""Shared fixtures: a real mosquitto on a free loopback port, an HQ-side subscriber, configs.

No test sleeps to synchronise: ``wait_for`` polls a condition until a deadline and fails with
a message saying what never happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import settings
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.core.settings import AgentConfig
from edge_agent.core.validation import config_from_mapping
from edge_agent.hq.consumer import HqConsumer

REPO = Path(__file__).resolve().parents[1]

# Hypothesis fails an example that takes over 200 ms by default. On a busy 2-core box (CI, or
# the fault tests' daemons beside it) a garbage collection or a descheduled thread takes that
# long, and the test then fails on timing, not on behaviour. Examples stay bounded by count.
settings.register_profile("edge-agent", deadline=None)
settings.load_profile("edge-agent")


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto process on 127.0.0.1 that tests can stop and restart on the same port."""

    def __init__(
        self, workdir: Path, persistence: bool = False, anonymous: bool = True, extra: Sequence[str] = ()
    ) -> None:
        """``extra``: more configuration lines (listeners, TLS, password and ACL files)."""
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.config_path = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            # The default (1000) silently drops QoS 1 messages for a slow subscriber: the
            # broker, not the agent, would lose data and the test would blame the agent.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            # Started as root, mosquitto drops to user 'mosquitto', which cannot write the
            # persistence file in the test's directory: stay the user that started it.
            *(["user root"] if os.geteuid() == 0 else []),
            "log_type error",
            "log_type warning",
            *extra,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("ab") as log:
            self._process = subprocess.Popen([binary, "-c", str(self.config_path)], stdout=log, stderr=log)
        wait_for(self._accepting, 10, f"mosquitto on port {self.port}")
        return self

    def _accepting(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            pytest.fail(f"mosquitto exited: {self.log.read_text()}")
        return port_open(self.host, self.port)

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its ACL and password files."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        self._process = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Make (not start) brokers; each is stopped at the end of the test."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed: run `make test`, which installs it")
    made: list[Mosquitto] = []

    def make(persistence: bool = False) -> Mosquitto:
        workdir = tmp_path / f"broker{len(made)}"
        workdir.mkdir()
        broker = Mosquitto(workdir, persistence)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory().start()


class Subscriber:
    """HQ's side of the wire: collects every message on a topic filter, decoded."""

    def __init__(
        self, broker: Mosquitto, topic_filter: str, client_id: str = "hq-test", persistent: bool = False
    ) -> None:
        """``persistent``: a session the broker keeps (and queues for) while we are away, as HQ has."""
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self._topic_filter = topic_filter
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        properties = None
        if persistent:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=not persistent, properties=properties)
        self.client.loop_start()
        wait_for(subscribed.is_set, 10, "SUBACK")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags, reason_code, properties) -> None:
        # A broker that lost our session (restarted without persistence) needs the subscription again.
        if not reason_code.is_failure and not flags.session_present:
            client.subscribe(self._topic_filter, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        # Never raise here: paho 2 lets a callback exception end its network thread.
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = {"undecodable": message.payload.hex()}
        with self._lock:
            self.messages.append((message.topic, payload))

    def event_ids(self, suffix: str = "") -> list[str]:
        with self._lock:
            return [p["event_id"] for t, p in self.messages if t.endswith(suffix) and "event_id" in p]

    def on(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for topic, payload in self.messages if topic.endswith(suffix)]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(
        broker: Mosquitto,
        topic_filter: str = "retail/v1/stores/+/+/#",
        client_id: str = "hq-test",
        persistent: bool = False,
    ) -> Subscriber:
        sub = Subscriber(broker, topic_filter, client_id, persistent)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def make_config(tmp_path: Path, broker: Mosquitto | None = None, **sections: dict[str, Any]) -> AgentConfig:
    """A small valid store configuration; ``sections`` override whole TOML tables' keys."""
    data: dict[str, Any] = {
        "store": {"id": "s1", "timezone": "Europe/Rome"},
        "zones": [{"id": "entrance"}, {"id": "counter"}],
        "receivers": [{"id": "entrance", "zone": "entrance"}, {"id": "counter", "zone": "counter"}],
        "mqtt": {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "keepalive_s": 5},
        "storage": {"path": str(tmp_path / "agent.db"), "group_max_delay_s": 0.02},
        "scheduler": {"tick_interval_s": 0.1},
    }
    if broker is not None:
        data["mqtt"].update(host=broker.host, port=broker.port)
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_mapping(data)


# Fault-injection outcomes, one row per scenario, printed as one table at the end of the run.
FAULT_TABLE: list[dict[str, Any]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FAULT_TABLE:
        return
    columns = [
        "scenario", "generated", "delivered", "gap-reported", "lost", "duplicated", "unexpected",
        "phantom visits", "lost visits", "note",
    ]  # fmt: skip
    rows = [[str(row.get(c, "")) for c in columns] for row in FAULT_TABLE]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    terminalreporter.section("fault injection: every generated event classified at HQ")
    for line in [columns, ["-" * w for w in widths], *rows]:
        terminalreporter.write_line("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


# --------------------------------------------------------------------------- PostgreSQL for HQ

PG_BIN = Path("/usr/lib/postgresql")


class Postgres:
    """A throwaway PostgreSQL server on a free loopback port, its data in a fresh directory.

    As root (CI, containers) initdb refuses to run, so the server runs as the ``postgres`` user
    Debian's package creates, in a directory under /tmp (pytest's own tmp is 0700 root)."""

    def __init__(self, durable_commits: bool = False) -> None:
        """``durable_commits``: a commit is on disk when it returns (synchronous_commit on, as
        a production server must have), so a crash of the server loses no acknowledged batch."""
        import tempfile

        binaries = sorted(PG_BIN.glob("*/bin/initdb"))
        if not binaries:
            pytest.fail("PostgreSQL is not installed: run `make test`, which installs it")
        self.bin = binaries[-1].parent
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="edge-agent-pg-"))
        self.data = self.workdir / "data"
        self._as_root = os.geteuid() == 0
        self._durable = durable_commits

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        subprocess.run([*prefix, *command], check=True, cwd=self.workdir, capture_output=True)

    def start(self) -> Postgres:
        if self._as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        return self.resume()

    def resume(self) -> Postgres:
        """Start the server on its data directory (again, after ``halt``), same port."""
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.workdir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200 "
            f"-c synchronous_commit={'on' if self._durable else 'off'}"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.workdir / "log"),
                  "-w", "-t", "30", "-o", options, "start")  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        """The postmaster's process id (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def halt(self) -> None:
        """Stop the server as a crash would (no shutdown checkpoint), keeping its data."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One server per test session (about 1.5 s to make); stopped even if tests fail."""
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(postgres: Postgres) -> str:
    """A database on the session's server, shared by the session's tests."""
    return postgres.create_database("testdb")


@contextlib.contextmanager
def started_consumers(broker: Mosquitto, db: str | Path) -> Iterator[Callable[..., HqConsumer]]:
    """A maker of HQ reference consumers on ``broker`` writing to ``db``, each subscribed before it
    is returned, all stopped at the end."""

    made: list[HqConsumer] = []

    def make(name: str, group: str = "reporting", db: str | Path = db) -> HqConsumer:
        consumer = HqConsumer(broker.host, broker.port, group, db, client_id=name).start()
        made.append(consumer)
        wait_for(consumer.subscribed.is_set, 10, f"{name} subscribed")
        return consumer

    try:
        yield make
    finally:
        for consumer in made:
            consumer.stop()
