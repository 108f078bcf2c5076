"""The agent's durable path as a separate process, for fault tests that kill it with SIGKILL.

``python -m tests.fault_agent DB HOST PORT COUNT`` generates events ``E000000``..``E{COUNT-1}``
into the real outbox, each in the same transaction as a durable progress mark, so a restart
continues where the killed process stopped; the real MQTT link publishes them. Exits 0 once all
are generated and the outbox is empty. Killed at any moment, it must lose nothing.
"""

from __future__ import annotations

import sys
import time

from edge_agent.config import config_from_mapping
from edge_agent.events import FootfallMessage, utc
from edge_agent.ids import EventIdFactory
from edge_agent.link import MqttLink
from edge_agent.outbox import Outbox
from edge_agent.storage import Database
from edge_agent.topics import Topics


def main(db_path: str, host: str, port: int, count: int) -> int:
    config = config_from_mapping(
        {
            "store": {"id": "f1"},
            "mqtt": {"host": host, "port": port, "client_id": "fault-agent", "reconnect_min_s": 0.1,
                     "reconnect_max_s": 0.5},
            "storage": {"path": db_path},
        }
    )  # fmt: skip
    database = Database(db_path)
    database.db["generated"].create({"i": int}, pk="i", if_not_exists=True)
    ids = EventIdFactory()
    outbox = Outbox(database, Topics("retail/v1", "f1"), boot_id=ids.random(8).hex(), ids=ids)
    link = MqttLink(config, outbox, on_downlink=lambda delivery: None, status_payload=lambda state: b"{}")
    link.start()
    with database.lock:
        row = database.db.conn.execute("SELECT max(i) FROM generated").fetchone()
    start = 0 if row[0] is None else row[0] + 1
    for i in range(start, count):
        now = time.time()
        event = FootfallMessage(
            event_id=f"E{i:06d}", store_id="f1", ts=utc(now), interval_start=utc(now - 60),
            interval_end=utc(now), entries=i, exits=0, occupancy=0, customers_recognised=0,
        )  # fmt: skip
        with database.transaction() as conn:
            outbox.add([event], now)
            conn.execute("INSERT INTO generated VALUES (?)", (i,))
        link.wake()
    while outbox.depth() or link.inflight:
        link.wake()
        time.sleep(0.02)  # waiting for the drain, in the process under test: not test synchronisation
    link.stop(5)
    database.close()
    print("drained", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
