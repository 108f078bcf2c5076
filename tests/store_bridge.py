"""The bridged topology for tests: HQ's mosquitto, a WAN line that can be cut, and the store's
mosquitto running config/mosquitto-store-bridge.conf and config/mosquitto-store-acl.conf as
installed, bridging to HQ over TLS with a client certificate from tests/pki.py.

Only what differs on a test box is substituted (addresses, ports, file paths, logging) plus two
timers, named in ``TEST_TIMERS``; every other line of the store's files runs as shipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

from tests.conftest import REPO, Mosquitto, free_port, port_open, wait_for
from tests.pki import Pki

STORE_BRIDGE_CONF = REPO / "config" / "mosquitto-store-bridge.conf"
STORE_ACL = REPO / "config" / "mosquitto-store-acl.conf"
HQ_ACL = REPO / "config" / "mosquitto-acl.conf"
PLACEHOLDERS = ("@STORE_ID@", "@HQ_BROKER@", "@LAN_ADDRESS@")
AGENT_PASSWORD = "agent-s3cret-passw0rd"
RECEIVER_PASSWORD = "receiver-s3cret-passw0rd"
# The shipped timers scaled down so that a 30 s cut fits CI's budget: the bridge notices the
# dead line within 7.5 s (not 22 s) and reconnects within 2 s of the line's return (not 20 s).
TEST_TIMERS = {"keepalive_interval": ["5"], "restart_timeout": ["1 2"]}


def render(template: Path, store_id: str, overrides: dict[str, list[str]]) -> str:
    """``template`` with the store id filled in and the value of each option named in
    ``overrides`` replaced, occurrence by occurrence; an override the file does not use, or a
    placeholder left over, fails (so the files and the tests cannot drift apart)."""
    pending = {key: list(values) for key, values in overrides.items()}
    lines = []
    for shipped in template.read_text().replace("@STORE_ID@", store_id).splitlines():
        key = shipped.split(" ", 1)[0]
        if key in pending:
            if not pending[key]:
                raise ValueError(f"{template.name}: more {key!r} lines than overrides")
            lines.append(f"{key} {pending[key].pop(0)}")
            continue
        if not shipped.startswith("#") and any(p in shipped for p in PLACEHOLDERS):
            raise ValueError(f"{template.name}: placeholder left in {shipped!r}")
        lines.append(shipped)
    unused = {key: values for key, values in pending.items() if values}
    if unused:
        raise ValueError(f"{template.name}: no line for {unused}")
    return "\n".join(lines) + "\n"


def _broker(workdir: Path, config: str) -> Mosquitto:
    """A Mosquitto (start/stop/restart on its port) running ``config`` instead of the fixture's
    own; ``config`` takes the port as ``{port}``."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir)
    # Started as root, mosquitto drops to user 'mosquitto', which cannot write the test's files.
    run_as = "user root\n" if os.geteuid() == 0 else ""
    broker.config_path.write_text(config.replace("{port}", str(broker.port)).rstrip("\n") + "\n" + run_as)
    return broker


class WanLink:
    """The store's line to HQ: a TCP relay that can be cut. A cut is what a dead uplink does to
    the store box: open connections carry nothing more either way and are never closed (no FIN
    nor RST crosses a dead line; only keepalives tell), and stay dead after the line returns (the
    ISP's NAT has forgotten them); a new connection fails at once, as connect() does with
    "network unreachable" while the box has no route out (here: refused, nothing listens)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts = 0  # a connection made before the latest cut is dead for good
        self._cut = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listen()

    def _listen(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), name="wan-accept", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self.cuts += 1
            self._cut.set()
        self._server.close()

    def restore(self) -> None:
        self._cut.clear()
        self._listen()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed: the line is cut, or the test is over
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                born = self.cuts
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target, born), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, born: int) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            dead = self._cut.is_set() or self.cuts != born
            if not data:
                if not dead:  # a real close passes through; a dead line shows nothing
                    for sock in (source, target):
                        sock.close()
                return
            if not dead:
                try:
                    target.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()


class BridgedStore:
    """HQ's broker (a TLS listener for the stores' bridges with config/mosquitto-acl.conf, an
    internal plain listener for HQ's own consumers, as HQ's network has), the WAN line, and the
    store's broker from the shipped files with accounts for the agent and two receivers."""

    def __init__(self, workdir: Path, store_id: str, receivers: tuple[str, ...] = ("entrance", "counter")):
        self.store_id = store_id
        workdir.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(workdir)
        server_cert, server_key = self.pki.issue("localhost", server=True)
        bridge_cert, bridge_key = self.pki.issue(store_id)  # the CN HQ's ACL knows the store by
        self.hq_tls_port = free_port()
        hq_config = [
            "per_listener_settings true",
            "listener {port} 127.0.0.1",  # HQ's internal network: consumers, downlink publishers
            "allow_anonymous true",
            f"listener {self.hq_tls_port} 127.0.0.1",  # the stores' bridges
            "allow_anonymous false",
            f"cafile {self.pki.ca_file}",
            f"certfile {server_cert}",
            f"keyfile {server_key}",
            "require_certificate true",
            "use_identity_as_username true",
            f"acl_file {HQ_ACL}",
            # HQ must not be the one dropping (tests/conftest.py); not 0, which 2.0.11 takes
            # literally once it has refused a publish, and then drops the connection.
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            "persistence true",
            f"persistence_location {workdir / 'hq'}/",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.hq = _broker(workdir / "hq", "\n".join(hq_config)).start()
        wait_for(lambda: port_open("127.0.0.1", self.hq_tls_port), 10, "HQ's TLS listener")
        self.wan = WanLink(self.hq_tls_port)

        store_dir = workdir / "store"
        store_dir.mkdir()
        passwords = store_dir / "passwd"
        passwords.touch(mode=0o600)
        accounts = [(store_id, AGENT_PASSWORD), *((r, RECEIVER_PASSWORD) for r in receivers)]
        for user, password in accounts:
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
        acl = store_dir / "store.acl"
        acl.write_text(render(STORE_ACL, store_id, {}))
        self.agent_port = free_port()
        store_config = render(
            STORE_BRIDGE_CONF, store_id,
            {
                "password_file": [str(passwords)],
                "acl_file": [str(acl)],
                "listener": ["{port} 127.0.0.1", f"{self.agent_port} 127.0.0.1"],
                "persistence_location": [f"{store_dir}/"],
                "log_dest": ["stderr"],
                "address": [f"127.0.0.1:{self.wan.port}"],
                "bridge_cafile": [str(self.pki.ca_file)],
                "bridge_certfile": [str(bridge_cert)],
                "bridge_keyfile": [str(bridge_key)],
                **TEST_TIMERS,
            },
        )  # fmt: skip
        self.store = _broker(store_dir, store_config).start()
        wait_for(lambda: port_open("127.0.0.1", self.agent_port), 10, "the store broker's agent listener")

    @property
    def lan_port(self) -> int:
        """Where the receivers connect."""
        return self.store.port

    @property
    def bridge_topic(self) -> str:
        """The bridge's retained state at HQ: "1" connected, "0" its last will."""
        return f"retail/v1/stores/{self.store_id}/bridge"

    def stop(self) -> None:
        try:
            self.store.stop()
        except subprocess.TimeoutExpired as ignored:
            # The 2.0.11 hang (docs/hq.md, "Bridged"): spinning, deaf to SIGTERM. Kill it so that
            # it does not outlive the test, and say what happened.
            process = self.store._process  # the fixture's own handle on the broker it started
            if process is not None:
                process.kill()
                process.wait(10)
            raise AssertionError(
                f"the store broker ignored SIGTERM:\n{self.store.log.read_text()[-2000:]}"
            ) from ignored
        finally:
            self.wan.close()
            self.hq.stop()
