"""Which sightings are beacons and not people. Pure: frames, addresses and time in.

A frame only a beacon sends (TLM plain or encrypted, URL, UID, a fleet beacon's iBeacon or
AltBeacon, any other 0xFEAA frame) marks its sighting, and for a while its address, as a
beacon's: a beacon interleaves such frames with others (an EID beacon sends EID and encrypted
TLM in turns, from one address), and none of them may count as a shopper.

A fleet beacon configured with its identity key (``[[beacons]] identity_key``) is known by its
EID tokens too, and its encrypted TLM is decrypted for beacon health. Its EID time base is the
one the agent's tokens use (Unix seconds, ``identity.rotation_exponent``): provision the beacon
that way, as the app's phones are.
"""

from __future__ import annotations

from typing import Final, Protocol

from edge_agent.core.etlm import decrypt_tlm
from edge_agent.core.frames import (
    AltBeacon,
    BeaconOnly,
    EddystoneEncryptedTlm,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    Frame,
    IBeacon,
)
from edge_agent.core.identity import eid_token
from edge_agent.core.settings import BeaconSettings, IdentitySettings

# Frames no phone running the app sends; iBeacon and AltBeacon count only for the fleet's own
# beacons (a phone in the foreground can advertise an iBeacon, and its other frames are a person's).
ALWAYS_BEACON: Final = (EddystoneTlm, EddystoneEncryptedTlm, EddystoneUrl, EddystoneUid, BeaconOnly)
# A fixed beacon keeps its address for hours to days; a day bounds how long a wrong guess lasts.
ADDRESS_MEMORY_S: Final = 86400.0
# Far more beacons than any store has; past it the oldest addresses are forgotten first.
MAX_ADDRESSES: Final = 4096


class BeaconIds(Protocol):
    """The store's own beacons by identifier (``BeaconFleet``)."""

    def __contains__(self, beacon_id: str, /) -> bool: ...


class BeaconSightings:
    def __init__(self, beacons: list[BeaconSettings], identity: IdentitySettings) -> None:
        self._addresses: dict[str, float] = {}
        self.retune(beacons, identity)

    def retune(self, beacons: list[BeaconSettings], identity: IdentitySettings) -> None:
        """New fleet keys or token parameters; the addresses already known stay known."""
        self._keys = {
            b.id: bytes.fromhex(b.identity_key.get_secret_value()) for b in beacons if b.identity_key
        }
        self._k = identity.rotation_exponent
        self._skew = identity.skew_windows
        self._tokens: dict[int, dict[bytes, str]] = {}
        self._tokens_window: int | None = None

    def __repr__(self) -> str:  # never the keys
        return f"BeaconSightings({len(self._keys)} keyed beacons, {len(self._addresses)} addresses)"

    @staticmethod
    def is_beacon_frame(frame: Frame, fleet: BeaconIds) -> bool:
        """``fleet`` holds the identifiers of the store's own beacons."""
        if isinstance(frame, ALWAYS_BEACON):
            return True
        return isinstance(frame, IBeacon | AltBeacon) and frame.identifier in fleet

    # ---------------------------------------------------------------- addresses

    def remember(self, address: str, now: float) -> None:
        self._addresses.pop(address, None)
        self._addresses[address] = now  # insertion order is age order: the oldest go first
        if len(self._addresses) > MAX_ADDRESSES:
            del self._addresses[next(iter(self._addresses))]

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: a beacon's address is remembered as long."""
        self._addresses = {address: heard + delta_s for address, heard in self._addresses.items()}

    def is_beacon_address(self, address: str, now: float) -> bool:
        heard = self._addresses.get(address)
        if heard is None:
            return False
        if now - heard > ADDRESS_MEMORY_S:
            del self._addresses[address]
            return False
        return True

    # ---------------------------------------------------------------- keyed fleet beacons

    def _windows(self, now: float) -> list[int]:
        current = (int(now) & 0xFFFFFFFF) >> self._k
        # The current window first: it is the one almost every frame belongs to.
        nearby = [current, *(current + d for s in range(1, self._skew + 1) for d in (-s, s))]
        return [w for w in nearby if w >= 0]

    def beacon_of_token(self, eid: bytes, now: float) -> str | None:
        """The keyed fleet beacon whose EID token this is, around ``now``."""
        if not self._keys:
            return None
        current = (int(now) & 0xFFFFFFFF) >> self._k
        if current != self._tokens_window:  # once per rotation, not per phone's EID frame
            self._tokens_window = current
            windows = self._windows(now)
            self._tokens = {w: self._tokens.get(w) or self._tokens_of(w) for w in windows}
        for tokens in self._tokens.values():
            beacon_id = tokens.get(eid)
            if beacon_id is not None:
                return beacon_id
        return None

    def _tokens_of(self, window: int) -> dict[bytes, str]:
        time_s = window << self._k
        return {eid_token(key, self._k, time_s): beacon_id for beacon_id, key in self._keys.items()}

    def telemetry(self, frame: EddystoneEncryptedTlm, now: float) -> tuple[str, EddystoneTlm] | None:
        """(beacon id, telemetry) when the frame verifies under a keyed fleet beacon's key."""
        for window in self._windows(now) if self._keys else ():
            for beacon_id, key in self._keys.items():
                decoded = decrypt_tlm(frame, key, window << self._k, self._k)
                if isinstance(decoded, EddystoneTlm):
                    return beacon_id, decoded
        return None
