"""``edge-agent status``: what a technician needs to know about the local agent, read-only.

Queue and registry figures are read live from the daemon's SQLite file (WAL lets a reader in
beside the running daemon); link state, last sync, scanners and missing beacons come from the
snapshot the daemon stores at start, at every heartbeat, when the link comes up or goes down,
and on a clean stop (``service.Service._store_snapshot``): its age says whether a daemon that
did not stop cleanly is still alive. It lives in the daemon package because what the figures mean is the
daemon's: the snapshot is its heartbeat, and "not reporting" is counted in its heartbeat
intervals. The command only loads the configuration and prints what ``status_lines`` gives.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.core.const import PRIORITY_NAMES
from edge_agent.storage.outbox import queue_figures
from edge_agent.storage.readonly import open_read_only

# Three missed heartbeats: the daemon is stopped or stuck.
MISSED_HEARTBEATS = 3
# The text view's rows, in this order; the scanners follow, one line each, then the remote
# receivers' counters.
TEXT_KEYS = (
    "daemon", "agent_version", "link", "last_sync_s", "last_heartbeat_s", "queue_depth",
    "queue_by_priority", "oldest_queued_s", "open_visits", "registry_size", "registry_version",
    "missing_beacons",
)  # fmt: skip


def read_status(db_path: Path, now: float) -> dict[str, Any]:
    """Live queue and registry figures, and the daemon's last heartbeat snapshot (``snapshot``)."""
    with open_read_only(db_path) as conn:
        queue, oldest = queue_figures(conn)
        registry = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    snapshot = json.loads(meta["status"]) if "status" in meta else {}
    return {
        "queue_by_priority": {PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(queue.items())},
        "queue_depth": sum(queue.values()),
        "oldest_queued_s": None if oldest is None else round(max(0.0, now - oldest), 1),
        "registry_size": registry,
        "registry_version": int(meta["registry_version"]) if "registry_version" in meta else None,
        "snapshot": snapshot,
    }


def status_view(
    figures: dict[str, Any], now: float, heartbeat_interval_s: float, agent_version: str
) -> dict[str, Any]:
    """What ``edge-agent status --json`` prints, from what ``read_status`` read at ``now``.

    ``agent_version`` stands in until a daemon has stored a snapshot saying which one it runs.
    The keys keep their order: scripts diff this output.
    """
    status = dict(figures)
    snapshot: dict[str, Any] = status.pop("snapshot")
    # The daemon dates its snapshot on agent time, the system clock plus the correction it judged
    # (core.wallclock): ages are measured on the same clock.
    agent_now = now + ((snapshot.get("clock") or {}).get("correction_s") or 0.0)
    heartbeat_age = _age(snapshot.get("ts"), agent_now)
    if heartbeat_age is None:
        daemon = "unknown"
    elif snapshot.get("state") == "offline":  # its last word on a clean stop
        daemon = "stopped"
    elif heartbeat_age <= MISSED_HEARTBEATS * heartbeat_interval_s:
        daemon = "running"
    else:
        daemon = "not reporting"
    status |= {
        "agent_version": snapshot.get("agent_version", agent_version),
        "last_heartbeat_s": heartbeat_age,
        "daemon": daemon,
        "link": snapshot.get("link", "unknown"),
        "link_error": snapshot.get("link_error"),
        "last_sync_s": _age(snapshot.get("last_sync"), agent_now),
        "open_visits": snapshot.get("open_visits"),
        "missing_beacons": snapshot.get("missing_beacons", []),
        "scanners": snapshot.get("scanners", []),
        "remote": snapshot.get("remote"),
        "clock": snapshot.get("clock"),
        "calibration": snapshot.get("calibration"),
        "integrity": snapshot.get("integrity"),
        "token_tables": snapshot.get("token_tables"),
    }
    return status


def status_lines(status: dict[str, Any]) -> list[str]:
    """The text view of ``status_view``: aligned ``key value`` rows, one line per scanner (with
    why it is down, when it is), then the remote receivers' counters."""
    lines = [f"{key:<18} {_text(key, status)}" for key in TEXT_KEYS]
    for scanner in status["scanners"]:
        state = "running" if scanner["running"] else "DOWN"
        reason = scanner.get("reason")
        lines.append(
            f"scanner {scanner['receiver']}/{scanner['adapter']}: {state}, mode {scanner['mode']}, "
            f"{scanner['watchdog_restarts']} restarts, {scanner['errors']} errors"
            + (f": {reason}" if reason else "")
        )
    lines.extend(remote_lines(status.get("remote")))
    lines.extend(clock_lines(status.get("clock")))
    lines.extend(calibration_lines(status.get("calibration")))
    return lines


def clock_lines(clock: dict[str, Any] | None) -> list[str]:
    """``clock: untrusted (NTP not synchronised), 1 step, last -3600 s at ...`` and, when the
    phones' tokens gave one, the estimate of the error and the correction in force."""
    if clock is None:
        return []
    synced = {True: "NTP synchronised", False: "NTP not synchronised", None: "NTP state unknown"}
    line = f"clock: {'trusted' if clock['trusted'] else 'UNTRUSTED'} ({synced[clock.get('synced')]})"
    steps, last = clock.get("steps", 0), clock.get("last_step")
    line += f", {steps} step{'' if steps == 1 else 's'}"
    if last:
        line += f", last {last['size_s']:+.0f} s at {last['at']}"
    lines = [line]
    if clock.get("estimated_error_s") is not None:
        lines.append(
            f"clock: phones put true time {clock['estimated_error_s']:+.0f} s "
            f"(+/- {clock['estimate_uncertainty_s']:.0f} s) from the system clock; "
            f"correction in force {clock.get('correction_s', 0.0):+.0f} s"
        )
    return lines


def calibration_lines(calibration: dict[str, Any] | None) -> list[str]:
    """One line per receiver (configured and estimated offset against -59 dBm, readings,
    residual, confidence, state), then the beacons whose check is not "in_place"."""
    if not calibration:
        return []
    lines = []
    for r in calibration.get("receivers", []):
        estimated = "-" if r.get("offset_db") is None else f"{r['offset_db']:+.1f} dB"
        residual = "-" if r.get("residual_db") is None else f"{r['residual_db']:.1f} dB"
        lines.append(
            f"calibration {r['receiver']}: {r['state']}, configured {r['configured_offset_db']:+.1f} dB, "
            f"estimated {estimated}, {r['samples']} readings of {r['beacons']} beacons, "
            f"residual {residual}, confidence {r['confidence']:.2f}"
            + (f", {r['rejected']} rejected" if r.get("rejected") else "")
        )
    for b in calibration.get("beacons", []):
        if b["state"] != "in_place":
            lines.append(f"calibration beacon {b['beacon_id']}: {b['state']} ({b['receivers']} receivers)")
    return lines


def remote_lines(remote: dict[str, Any] | None) -> list[str]:
    """``remote: 12 sightings accepted, 3 messages rejected (clock_skew 2, not_json 1)`` and,
    when some came from receivers the configuration lacks, which ones."""
    if remote is None:
        return []
    rejected = remote.get("rejected", {})
    by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items()))
    lines = [
        f"remote: {remote.get('accepted', 0)} sightings accepted, {sum(rejected.values())} messages rejected"
        + (f" ({by_reason})" if by_reason else "")
    ]
    unknown = remote.get("unknown_receivers", {})
    if unknown:
        # repr: these ids come from the network, and reach a technician's terminal
        listed = ", ".join(f"{receiver!r} {count}" for receiver, count in sorted(unknown.items()))
        lines.append(f"remote: messages from receivers not in the configuration: {listed}")
    offsets = remote.get("clock_offsets") or {}
    if offsets:
        redated = ", ".join(f"{receiver!r} {offset:+.0f} s" for receiver, offset in sorted(offsets.items()))
        lines.append(f"remote: clocks off, sightings re-dated: {redated}")
    return lines


def _text(key: str, status: dict[str, Any]) -> Any:
    """A row's value; a link that is down says why beside it."""
    if key == "link" and status["link"] == "down" and status.get("link_error"):
        return f"down ({status['link_error']})"
    return status[key]


def _age(iso: str | None, now: float) -> float | None:
    """Seconds from an ISO timestamp of the snapshot to ``now``, to a tenth; None if absent."""
    return None if not iso else round(now - datetime.fromisoformat(iso).timestamp(), 1)
