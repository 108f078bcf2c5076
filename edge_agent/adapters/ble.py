"""Local Bluetooth adapters scanned with bleak (BlueZ), one scanner per adapter.

bleak does not notice when an adapter goes away mid-scan or when BlueZ stops delivering: it
neither raises nor stops (shared/notes/fake-bluez.md). So each scanner runs its own watchdog:
no advertisement for ``ble.watchdog_s`` → stop, back off, start again. Errors from BlueZ
(``org.bluez.Error.InProgress``, ``NotReady``, adapter missing) are retried with capped
exponential backoff. Restarts and errors are counted for health, with the reason the last
start failed in plain words (``adapters.bluez_errors``); the warning is logged at once, again
when the reason changes, and otherwise every few minutes with a count. Nothing here can stop
the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError

from edge_agent.adapters.bluez_errors import START_ERRORS, explain
from edge_agent.adapters.gatt import TokenReader
from edge_agent.core.clock import Clock
from edge_agent.core.const import COMPANY_APPLE, EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import AppleOverflow, EddystoneEid, decode_apple_overflow, encode_eddystone_eid
from edge_agent.core.repeats import RepeatLimiter, held_back
from edge_agent.core.settings import BleSettings, GattSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.throttle import SightingThrottle

_LOGGER = logging.getLogger(__name__)

# BlueZ passive scanning needs patterns: Apple manufacturer data (iBeacon, the app's overflow
# area) and Eddystone service data, as AD type + bytes at offset 0 (company ids little-endian).
_PASSIVE_PATTERNS = (
    OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00"),
    OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe"),
)
# What BlueZ answers when the adapter (or a BlueZ without experimental features) offers no
# advertisement monitor: passive scanning is impossible there, so the scanner goes active.
_NO_PASSIVE_ERRORS = frozenset(
    {
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.bluez.Error.NotSupported",
    }
)
# How often the watchdog looks; well below any sensible watchdog_s.
_WATCHDOG_CHECK_S = 0.1


@dataclass(slots=True)
class ScannerHealth:
    receiver: str
    adapter: str
    mode: str = "active"
    running: bool = False
    advertisements: int = 0
    sightings: int = 0
    starts: int = 0
    watchdog_restarts: int = 0
    errors: int = 0
    last_error: str = ""
    reason: str = ""  # why the last start failed, for a technician; "" while scanning
    last_advertisement: float | None = None  # wall-clock time


class BleScanner:
    def __init__(
        self,
        receiver: str,
        adapter: str,
        submit: Callable[[Sighting], None],
        settings: BleSettings,
        clock: Clock,
        gatt: GattSettings | None = None,
    ) -> None:
        """Sightings carry ``clock``'s wall time; the watchdog measures silence on its monotonic time."""
        self._receiver = receiver
        self._adapter = adapter
        self._submit = submit
        self._settings = settings
        self._clock = clock
        self._throttle = SightingThrottle(settings.throttle_s)
        self._heard = clock.monotonic()  # the last advertisement
        self.health = ScannerHealth(receiver, adapter, settings.mode)
        self._warnings = RepeatLimiter()
        self._mode = settings.mode
        self._app_bit = gatt.overflow_bit if gatt is not None else None
        self.tokens = TokenReader(gatt, clock) if gatt is not None and self._app_bit is not None else None

    def _on_advertisement(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        self._heard = self._clock.monotonic()
        self.health.advertisements += 1
        now = self._clock.wall()
        self.health.last_advertisement = now
        service_data = {uuid.lower(): bytes(data) for uuid, data in advertisement.service_data.items()}
        if self.tokens is not None and self._shows_app_in_background(advertisement.manufacturer_data):
            token = self.tokens.cached_token(device.address)
            if token is not None:
                service_data[EDDYSTONE_SERVICE_UUID] = encode_eddystone_eid(EddystoneEid(0, token))
            elif self.tokens.should_read(device.address):
                self.tokens.start_read(device)
        sighting = Sighting(
            ts=now,
            receiver=self._receiver,
            address=device.address,
            rssi=advertisement.rssi,
            tx_power=advertisement.tx_power,
            manufacturer_data=dict(advertisement.manufacturer_data),
            service_data=service_data,
            service_uuids=tuple(uuid.lower() for uuid in advertisement.service_uuids),
            name=advertisement.local_name,
        )
        if self._throttle.admit(sighting):
            self.health.sightings += 1
            self._submit(sighting)

    def _shows_app_in_background(self, manufacturer_data: dict[int, bytes]) -> bool:
        data = manufacturer_data.get(COMPANY_APPLE)
        if data is None or self._app_bit is None:
            return False
        overflow = decode_apple_overflow(COMPANY_APPLE, data)
        return isinstance(overflow, AppleOverflow) and overflow.has_bit(self._app_bit)

    def _make_scanner(self) -> BleakScanner:
        bluez: BlueZScannerArgs = {"adapter": self._adapter}
        if self._mode == "passive":
            bluez["or_patterns"] = list(_PASSIVE_PATTERNS)
        return BleakScanner(self._on_advertisement, scanning_mode=self._mode, bluez=bluez)

    async def run(self, stopping: asyncio.Event) -> None:
        """Scan until ``stopping`` is set, restarting on silence or errors."""
        backoff = self._settings.restart_backoff_min_s
        while not stopping.is_set():
            scanner = self._make_scanner()
            try:
                await scanner.start()
            except START_ERRORS as exc:
                self._record_error("start", exc)
                if self._mode == "passive" and _passive_unsupported(exc):
                    _LOGGER.warning(
                        "adapter %s cannot scan passively (%s): scanning actively", self._adapter, exc
                    )
                    self._mode = self.health.mode = "active"
                    continue
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, self._settings.restart_backoff_max_s)
                continue
            self.health.starts += 1
            self.health.running = True
            self.health.reason = ""
            self._heard = self._clock.monotonic()
            _LOGGER.info("scanning receiver=%s adapter=%s mode=%s", self._receiver, self._adapter, self._mode)
            await self._watch(stopping)
            self.health.running = False
            try:
                await scanner.stop()
            except START_ERRORS as exc:  # the adapter may be gone already
                self._record_error("stop", exc)
            if not stopping.is_set():
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, self._settings.restart_backoff_max_s)

    async def _watch(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await _wait(stopping, _WATCHDOG_CHECK_S)
            silent = self._clock.monotonic() - self._heard
            if silent > self._settings.watchdog_s:
                self.health.watchdog_restarts += 1
                _LOGGER.warning(
                    "no advertisement for %.0f s receiver=%s adapter=%s: restarting scan",
                    silent, self._receiver, self._adapter,
                )  # fmt: skip
                return

    def _record_error(self, during: str, exc: BaseException) -> None:
        self.health.errors += 1
        self.health.last_error = f"{during}: {type(exc).__name__}: {exc}"
        reason = explain(exc, self._adapter)
        if during == "start":
            self.health.reason = reason
        held = self._warnings.admit(during, self._clock.monotonic(), reason)
        if held is not None:
            _LOGGER.warning(
                "scanner %s failed receiver=%s adapter=%s: %s; retrying%s",
                during, self._receiver, self._adapter, reason, held_back(held),
            )  # fmt: skip


def _passive_unsupported(exc: BaseException) -> bool:
    if isinstance(exc, BleakDBusError):
        return exc.dbus_error in _NO_PASSIVE_ERRORS
    # bleak turns BlueZ's UnknownMethod for RegisterMonitor into this plain BleakError.
    return isinstance(exc, BleakError) and str(exc).startswith("passive scanning on Linux requires")


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


class BleRuntime:
    """Runs every scanner on one asyncio loop in a thread of its own (bleak needs a loop)."""

    def __init__(self, scanners: list[BleScanner]) -> None:
        self.scanners = scanners
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-agent-ble", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stopping = asyncio.Event()
            self._started.set()
            await asyncio.gather(*(scanner.run(self._stopping) for scanner in self.scanners))

        try:
            self._loop.run_until_complete(main())
        except Exception:
            _LOGGER.exception("BLE runtime failed")
        finally:
            # bleak leaves bus-monitoring tasks behind; end them before the loop goes.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
