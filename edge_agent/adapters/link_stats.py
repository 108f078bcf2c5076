"""What the MQTT link counts, for the status message and ``edge-agent status``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class LinkStats:
    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    connects: int = 0
    connect_failures: int = 0  # attempts that got no connection (or a refusal)
    disconnects: int = 0
    expired: int = 0  # rows dropped unsent because they expired (late notifications)
    silent_closes: int = 0  # connections closed because the broker went quiet (a dead path)
    resent: int = 0  # outbox rows published again (after a reconnect, a refusal or a restart)
    last_sync: float | None = None  # wall-clock time of the last PUBACK that deleted a row
    connected_since: datetime | None = None  # when the current (or last) connection's CONNECT went out
