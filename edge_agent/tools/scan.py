"""``edge-agent scan``: a live table of what the local adapters hear, optionally recorded.

The recording is the trace format (DESIGN §3) of exactly the sightings the agent would process
(after throttling), so ``edge-agent replay`` of the file sees the same sightings. By default
phones' addresses are pseudonymised under a key drawn for the recording and discarded when it
ends, and only the fields the agent decodes are kept (``core.recording``); ``raw=True``
(``--record-raw``) writes everything as heard, for a technician who needs it and knows why.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from edge_agent.adapters.ble import BleRuntime, BleScanner, ScannerHealth
from edge_agent.adapters.clock import SYSTEM_CLOCK
from edge_agent.core.recording import RecordingFilter
from edge_agent.core.scanview import ScanView
from edge_agent.core.settings import BleSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import format_trace_line

REFRESH_S = 0.25
# 256 bits for HMAC-SHA256: nobody can search the address space for a pseudonym's origin.
RECORDING_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class ScanResult:
    view: ScanView
    scanners: list[ScannerHealth]

    @property
    def never_ran(self) -> list[ScannerHealth]:
        """The scanners that never started, each with the reason its last start failed."""
        return [health for health in self.scanners if not health.starts]


def run_scan(
    receivers: list[tuple[str, str]],
    settings: BleSettings,
    console: Console,
    duration: float | None = None,
    record: Path | None = None,
    raw: bool = False,
) -> ScanResult:
    """Scan ``receivers`` (receiver id, adapter) until ``duration`` passes or Ctrl-C.

    ``record``: write the sightings there, pseudonymised and filtered unless ``raw``.
    """
    view = ScanView()
    lock = threading.Lock()
    recording = record.open("w", encoding="utf-8") if record else None
    # The key lives only in this filter, which goes when the scan returns: nobody can redo
    # this recording's pseudonyms afterwards, nor match them with another recording's.
    privacy = None if raw else RecordingFilter(secrets.token_bytes(RECORDING_KEY_BYTES))
    if recording is not None:
        recording.write(f"# edge-agent scan --record, started {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        recording.write(f"# {recording_note(raw)}\n")

    def emit(sighting: Sighting) -> None:
        with lock:
            view.add(sighting)  # the screen shows what is heard; only the file is filtered
            if recording is not None:
                kept = sighting if privacy is None else privacy.apply(sighting)
                recording.write(format_trace_line(kept) + "\n")
                recording.flush()  # a technician may pull the plug; keep what was heard

    scanners = [
        BleScanner(receiver, adapter, emit, settings, SYSTEM_CLOCK) for receiver, adapter in receivers
    ]
    runtime = BleRuntime(scanners)
    runtime.start()
    deadline = None if duration is None else time.monotonic() + duration
    try:
        with Live(_render(view, scanners, lock), console=console, auto_refresh=False) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(REFRESH_S)  # screen refresh cadence, not synchronisation
                live.update(_render(view, scanners, lock), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
        if recording is not None:
            recording.close()
    return ScanResult(view, [scanner.health for scanner in scanners])


def recording_note(raw: bool) -> str:
    if raw:
        return "RAW recording: real Bluetooth addresses and full advertisements of every device"
    return (
        "addresses of devices that are not beacons are pseudonyms under a key discarded at the end; "
        "only the fields the agent decodes are kept"
    )


def _render(view: ScanView, scanners: list[BleScanner], lock: threading.Lock) -> Table:
    now = time.time()
    table = Table(title="edge-agent scan", expand=False)
    for column in ("kind", "id / token", "receiver", "address", "RSSI", "smoothed", "≈ m", "seen", "details"):
        table.add_column(column, justify="right" if column in {"RSSI", "smoothed", "≈ m", "seen"} else "left")
    with lock:
        rows = view.ordered()
    for row in rows:
        table.add_row(
            row.kind,
            row.identity,
            row.receiver,
            row.address,
            str(row.rssi),
            f"{row.smoothed:.0f}",
            "" if row.distance_m is None else f"{row.distance_m:.1f}",
            f"{max(0.0, now - row.last_seen):.0f} s ago",
            " ".join(f"{k}={v}" for k, v in row.details.items()),
        )
    table.caption = "  ".join(
        f"{s.health.receiver}/{s.health.adapter}: {'scanning' if s.health.running else 'DOWN'}, "
        f"{s.health.advertisements} adv, {s.health.watchdog_restarts} restarts, {s.health.errors} errors"
        + (f" ({s.health.reason})" if s.health.reason and not s.health.running else "")
        for s in scanners
    )
    return table
