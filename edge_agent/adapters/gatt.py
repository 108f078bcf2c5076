"""Tokens over GATT: what a backgrounded iOS app cannot advertise, the agent reads.

In the background iOS moves the app's service UUID to Apple's overflow area and drops its
service data, so no Eddystone-EID frame is heard. When a sighting shows the app's overflow bit
and no token is cached for the address, a task connects, reads the token characteristic
(the same 8-byte Eddystone-EID token the app advertises in the foreground), disconnects, and
caches address → token for ``gatt.cache_s``. Sightings of that address then carry the token as
an Eddystone-EID frame, so the core resolves them exactly as if it had been advertised.

Connections are limited (``gatt.max_connections``) and a failed read backs off per address with
capped exponential delays; reads run beside the scan and never block it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TypeVar

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from edge_agent.core.clock import Clock
from edge_agent.core.const import GATT_MAX_ADDRESSES, GATT_SWEEP_S
from edge_agent.core.identity import TOKEN_BYTES
from edge_agent.core.settings import GattSettings

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class GattHealth:
    reads: int = 0
    failures: int = 0
    cache_hits: int = 0
    connected_now: int = 0
    most_connected: int = 0
    last_error: str = ""


class TokenReader:
    def __init__(self, settings: GattSettings, clock: Clock) -> None:
        """The cache's lifetime and the retry backoff are durations: ``clock``'s monotonic time."""
        self._settings = settings
        self._monotonic = clock.monotonic
        self._cache: dict[str, tuple[bytes, float]] = {}  # address -> (token, monotonic expiry)
        self._pending: set[str] = set()
        self._retry: dict[str, tuple[float, int]] = {}  # address -> (monotonic not before, attempts)
        self._slots: asyncio.Semaphore | None = None  # made on the scanning loop
        self._swept_at = self._monotonic()
        self.health = GattHealth()

    def _sweep(self, now: float) -> None:
        """Forget addresses that will not come back: cache entries past their expiry, retries
        well past their backoff; beyond ``GATT_MAX_ADDRESSES`` each, the oldest."""
        self._swept_at = now
        self._cache = {a: e for a, e in self._cache.items() if e[1] > now}
        retry_max = self._settings.retry_max_s
        self._retry = {a: r for a, r in self._retry.items() if now < r[0] + 2 * retry_max}

    def cached_token(self, address: str) -> bytes | None:
        entry = self._cache.get(address)
        if entry is None:
            return None
        token, expires = entry
        if self._monotonic() >= expires:
            del self._cache[address]
            return None
        self.health.cache_hits += 1
        return token

    def should_read(self, address: str) -> bool:
        now = self._monotonic()
        if now - self._swept_at >= GATT_SWEEP_S:
            self._sweep(now)
        if address in self._pending or address in self._cache:
            return False
        retry = self._retry.get(address)
        return retry is None or now >= retry[0]

    def start_read(self, device: BLEDevice) -> None:
        """Schedule a read on the running loop (called from bleak's detection callback)."""
        self._pending.add(device.address)
        asyncio.get_running_loop().create_task(self._read(device))

    async def _read(self, device: BLEDevice) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._settings.max_connections)
        try:
            async with self._slots:
                self.health.connected_now += 1
                self.health.most_connected = max(self.health.most_connected, self.health.connected_now)
                try:
                    token = await self._connect_and_read(device)
                finally:
                    self.health.connected_now -= 1
        except (BleakError, TimeoutError, OSError, EOFError, ValueError) as exc:
            self._failed(device.address, exc)
        else:
            self.health.reads += 1
            self._retry.pop(device.address, None)
            _put_newest(self._cache, device.address, (token, self._monotonic() + self._settings.cache_s))
        finally:
            self._pending.discard(device.address)

    async def _connect_and_read(self, device: BLEDevice) -> bytes:
        async with BleakClient(device, timeout=self._settings.connect_timeout_s) as client:
            value = bytes(await client.read_gatt_char(self._settings.token_uuid))
        if len(value) != TOKEN_BYTES:
            raise ValueError(f"token characteristic holds {len(value)} bytes, expected {TOKEN_BYTES}")
        return value

    def _failed(self, address: str, exc: BaseException) -> None:
        attempts = self._retry.get(address, (0.0, 0))[1] + 1
        delay = min(self._settings.retry_max_s, self._settings.retry_min_s * 2 ** (attempts - 1))
        _put_newest(self._retry, address, (self._monotonic() + delay, attempts))
        self.health.failures += 1
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        # The address is a phone's: it stays out of the log.
        _LOGGER.info(
            "token read failed (attempt %d, next in %.0f s): %s", attempts, delay, self.health.last_error
        )


def _put_newest(entries: dict[str, T], address: str, value: T) -> None:
    """Insert ``address`` as the newest entry (insertion order is age order), dropping the
    oldest beyond ``GATT_MAX_ADDRESSES``."""
    entries.pop(address, None)
    entries[address] = value
    if len(entries) > GATT_MAX_ADDRESSES:
        del entries[next(iter(entries))]
