"""Decode beacon frames from bleak-shaped advertisement data. Pure: bytes in, values out.

Anything arriving over the air is hostile until proven otherwise, so no decoder raises: each
returns a frame value or ``NotThisFrame`` carrying the reason, which the scan view shows and
the health counters count.

Formats (byte layouts from the public specifications):
- iBeacon: Apple manufacturer data ``02 15 | uuid(16) | major(2) | minor(2) | tx(1)``.
- AltBeacon: any company's manufacturer data ``BE AC | id(20) | ref rssi(1) | reserved(1)``.
- Eddystone (service 0xFEAA): UID ``00``, URL ``10``, TLM ``20`` (plain, version ``00``, and
  encrypted, version ``01``: eddystone-tlm/tlm-encrypted.md), EID ``30`` frames, as in
  github.com/google/eddystone (protocol-specification.md and each frame's page). Any other
  frame type in 0xFEAA service data only ever comes from a beacon or tag: ``BeaconOnly``.
- Apple's "overflow area": Apple manufacturer data ``01 | 128-bit mask``. A backgrounded iOS app
  cannot advertise its service UUID; iOS sets one bit of this mask per advertised service
  instead (the UUID-to-bit hash is Apple's and unpublished, so the app's bit is configured,
  found from a capture). Bits are numbered as in D. G. Young's published table ("Hacking the
  Overflow Area", 2020, and OverflowAreaUtils.swift in his reference app): bit = mask byte
  index x 8 + bit within the byte, least significant bit first. So ``...80`` in the last mask
  byte is bit 127 (his table's service ...0039), ``01`` in the first byte is bit 0.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from edge_agent.core.const import COMPANY_APPLE, EDDYSTONE_SERVICE_UUID
from edge_agent.core.sighting import Sighting


@dataclass(frozen=True, slots=True)
class NotThisFrame:
    """A decoder's 'no', with the reason (shown by the scan view, counted in health)."""

    reason: str


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: str
    major: int
    minor: int
    measured_power: int

    @property
    def identifier(self) -> str:
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


@dataclass(frozen=True, slots=True)
class AltBeacon:
    company_id: int
    beacon_id: bytes
    reference_rssi: int
    reserved: int

    @property
    def identifier(self) -> str:
        return f"altbeacon:{self.beacon_id.hex()}"


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    tx_power: int
    namespace: bytes
    instance: bytes

    @property
    def identifier(self) -> str:
        return f"eddystone-uid:{self.namespace.hex()}:{self.instance.hex()}"


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    tx_power: int
    url: str


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    battery_mv: int | None
    temperature_c: float | None
    advertising_count: int
    uptime_s: float


@dataclass(frozen=True, slots=True)
class EddystoneEid:
    tx_power: int
    eid: bytes


@dataclass(frozen=True, slots=True)
class AppleOverflow:
    mask: bytes  # 16 bytes

    def has_bit(self, bit: int) -> bool:
        # Young's numbering: byte index x 8 + bit, least significant bit first (module docstring).
        return 0 <= bit < 128 and bool(self.mask[bit // 8] & (1 << (bit % 8)))


@dataclass(frozen=True, slots=True)
class EddystoneEncryptedTlm:
    """Encrypted telemetry (TLM version 01): readable only with the beacon's identity key
    (``core.etlm.decrypt_tlm``); on its own it says just "a beacon is here"."""

    ciphertext: bytes  # 12 bytes: the plain TLM fields after frame type and version
    salt: bytes  # 2 bytes, the low half of the EAX nonce
    mic: bytes  # 2 bytes, the truncated EAX tag


@dataclass(frozen=True, slots=True)
class BeaconOnly:
    """0xFEAA service data the agent does not read but only a beacon or tag sends: an unknown
    frame type, a TLM version after 01, or a malformed UID/URL/TLM frame. Never a shopper."""

    frame_type: int
    reason: str


Frame = (
    IBeacon | AltBeacon | EddystoneUid | EddystoneUrl | EddystoneTlm | EddystoneEncryptedTlm
    | EddystoneEid | AppleOverflow | BeaconOnly
)  # fmt: skip

IBEACON_PREFIX: Final = b"\x02\x15"
IBEACON_LENGTH: Final = 23
APPLE_OVERFLOW_TYPE: Final = 0x01
APPLE_OVERFLOW_LENGTH: Final = 17
ALTBEACON_PREFIX: Final = b"\xbe\xac"
ALTBEACON_LENGTH: Final = 24

EDDYSTONE_UID: Final = 0x00
EDDYSTONE_URL: Final = 0x10
EDDYSTONE_TLM: Final = 0x20
EDDYSTONE_EID: Final = 0x30

URL_SCHEMES: Final = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS: Final = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip
# The URL frame holds 1 to 17 encoded bytes after the scheme (eddystone-url, "Length 1-17").
URL_MIN_ENCODED: Final = 1
URL_MAX_ENCODED: Final = 17
TLM_PLAIN: Final = 0x00
TLM_ENCRYPTED: Final = 0x01
TLM_PLAIN_LENGTH: Final = 14
# Frame type, version, 12 bytes of ciphertext, 2 of salt, 2 of MIC (tlm-encrypted.md).
TLM_ENCRYPTED_LENGTH: Final = 18
TLM_FIELDS_LENGTH: Final = 12
# TLM temperature 0x8000 and battery 0 mean "not supported" in the specification.
TLM_TEMPERATURE_UNSUPPORTED: Final = 0x8000


def _uuid_text(raw: bytes) -> str:
    # The canonical 8-4-4-4-12 form, built from hex: uuid.UUID() costs more than the whole frame.
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def decode_ibeacon(company_id: int, data: bytes) -> IBeacon | NotThisFrame:
    if company_id != COMPANY_APPLE:
        return NotThisFrame("not Apple manufacturer data")
    if data[:2] != IBEACON_PREFIX:
        return NotThisFrame("no iBeacon prefix 02 15")
    if len(data) != IBEACON_LENGTH:
        return NotThisFrame(f"iBeacon must be {IBEACON_LENGTH} bytes, got {len(data)}")
    return IBeacon(
        uuid=_uuid_text(data[2:18]),
        major=int.from_bytes(data[18:20], "big"),
        minor=int.from_bytes(data[20:22], "big"),
        measured_power=_signed(data[22]),
    )


def decode_apple_overflow(company_id: int, data: bytes) -> AppleOverflow | NotThisFrame:
    if company_id != COMPANY_APPLE:
        return NotThisFrame("not Apple manufacturer data")
    if data[:1] != bytes([APPLE_OVERFLOW_TYPE]):
        return NotThisFrame("not an Apple overflow area (type 01)")
    if len(data) != APPLE_OVERFLOW_LENGTH:
        return NotThisFrame(f"Apple overflow area must be {APPLE_OVERFLOW_LENGTH} bytes, got {len(data)}")
    return AppleOverflow(bytes(data[1:]))


def decode_altbeacon(company_id: int, data: bytes) -> AltBeacon | NotThisFrame:
    if data[:2] != ALTBEACON_PREFIX:
        return NotThisFrame("no AltBeacon code BE AC")
    if len(data) != ALTBEACON_LENGTH:
        return NotThisFrame(f"AltBeacon must be {ALTBEACON_LENGTH} bytes, got {len(data)}")
    return AltBeacon(
        company_id=company_id,
        beacon_id=bytes(data[2:22]),
        reference_rssi=_signed(data[22]),
        reserved=data[23],
    )


def decode_eddystone(data: bytes) -> Frame | NotThisFrame:
    if not data:
        return NotThisFrame("empty Eddystone service data")
    frame_type = data[0]
    if frame_type == EDDYSTONE_UID:
        return _decode_uid(data)
    if frame_type == EDDYSTONE_URL:
        return _decode_url(data)
    if frame_type == EDDYSTONE_TLM:
        return _decode_tlm(data)
    if frame_type == EDDYSTONE_EID:
        return _decode_eid(data)
    return BeaconOnly(frame_type, f"unknown Eddystone frame type 0x{frame_type:02x}")


def _decode_uid(data: bytes) -> EddystoneUid | NotThisFrame:
    # 18 bytes, plus two reserved bytes that many beacons omit.
    if len(data) not in (18, 20):
        return NotThisFrame(f"Eddystone-UID must be 18 or 20 bytes, got {len(data)}")
    return EddystoneUid(tx_power=_signed(data[1]), namespace=bytes(data[2:12]), instance=bytes(data[12:18]))


def _decode_url(data: bytes) -> EddystoneUrl | NotThisFrame:
    if len(data) < 3:
        return NotThisFrame("Eddystone-URL too short")
    if len(data) - 3 < URL_MIN_ENCODED:
        return NotThisFrame("Eddystone-URL has no encoded URL after the scheme (1-17 bytes required)")
    if len(data) - 3 > URL_MAX_ENCODED:
        return NotThisFrame(f"Eddystone-URL longer than {URL_MAX_ENCODED} encoded bytes")
    if data[2] >= len(URL_SCHEMES):
        return NotThisFrame(f"unknown Eddystone-URL scheme 0x{data[2]:02x}")
    parts = [URL_SCHEMES[data[2]]]
    for byte in data[3:]:
        if byte < len(URL_EXPANSIONS):
            parts.append(URL_EXPANSIONS[byte])
        elif 0x21 <= byte <= 0x7E:
            parts.append(chr(byte))
        else:
            return NotThisFrame(f"reserved byte 0x{byte:02x} in Eddystone-URL")
    return EddystoneUrl(tx_power=_signed(data[1]), url="".join(parts))


def _decode_tlm(data: bytes) -> EddystoneTlm | EddystoneEncryptedTlm | BeaconOnly | NotThisFrame:
    if len(data) < 2:
        return NotThisFrame("Eddystone-TLM too short")
    if data[1] == TLM_ENCRYPTED:
        if len(data) != TLM_ENCRYPTED_LENGTH:
            length = TLM_ENCRYPTED_LENGTH
            return NotThisFrame(f"encrypted Eddystone-TLM must be {length} bytes, got {len(data)}")
        return EddystoneEncryptedTlm(bytes(data[2:14]), bytes(data[14:16]), bytes(data[16:18]))
    if data[1] != TLM_PLAIN:
        return BeaconOnly(EDDYSTONE_TLM, f"Eddystone-TLM version 0x{data[1]:02x} is not decoded")
    if len(data) != TLM_PLAIN_LENGTH:
        return NotThisFrame(f"Eddystone-TLM must be {TLM_PLAIN_LENGTH} bytes, got {len(data)}")
    return decode_tlm_fields(data[2:])


def decode_tlm_fields(fields: bytes) -> EddystoneTlm:
    """The 12 bytes after a TLM's frame type and version (plain, or decrypted ETLM)."""
    battery = int.from_bytes(fields[0:2], "big")
    raw_temperature = int.from_bytes(fields[2:4], "big")
    temperature = None
    if raw_temperature != TLM_TEMPERATURE_UNSUPPORTED:
        temperature = int.from_bytes(fields[2:4], "big", signed=True) / 256.0
    return EddystoneTlm(
        battery_mv=battery or None,
        temperature_c=temperature,
        advertising_count=int.from_bytes(fields[4:8], "big"),
        uptime_s=int.from_bytes(fields[8:12], "big") / 10.0,
    )


def _decode_eid(data: bytes) -> EddystoneEid | NotThisFrame:
    if len(data) != 10:
        return NotThisFrame(f"Eddystone-EID must be 10 bytes, got {len(data)}")
    return EddystoneEid(tx_power=_signed(data[1]), eid=bytes(data[2:10]))


def decode_advertisement(
    manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]
) -> list[Frame]:
    """Every frame an advertisement carries (a beacon may interleave several)."""
    frames: list[Frame] = []
    for company_id, data in manufacturer_data.items():
        # Dispatch on the leading bytes: only a decoder that can succeed is called (hot path).
        decoded: Frame | NotThisFrame | None = None
        if data[:2] == ALTBEACON_PREFIX:
            decoded = decode_altbeacon(company_id, data)
        elif company_id == COMPANY_APPLE and data[:2] == IBEACON_PREFIX:
            decoded = decode_ibeacon(company_id, data)
        elif company_id == COMPANY_APPLE and data[:1] == b"\x01":
            decoded = decode_apple_overflow(company_id, data)
        if decoded is not None and not isinstance(decoded, NotThisFrame):
            frames.append(decoded)
    eddystone = service_data.get(EDDYSTONE_SERVICE_UUID)
    if eddystone:
        decoded = decode_eddystone(eddystone)
        if not isinstance(decoded, NotThisFrame):
            frames.append(decoded)
        elif eddystone[0] != EDDYSTONE_EID:
            # A malformed UID, URL or TLM frame is still a beacon's: phones send only EID here.
            frames.append(BeaconOnly(eddystone[0], decoded.reason))
    return frames


def decode_sighting(sighting: Sighting) -> list[Frame]:
    return decode_advertisement(sighting.manufacturer_data, sighting.service_data)


# ---------------------------------------------------------------------------- encoders
# Used by the demo's store-day generator and by tests to round-trip every frame type.


def encode_ibeacon(frame: IBeacon) -> tuple[int, bytes]:
    body = (
        IBEACON_PREFIX
        + uuid.UUID(frame.uuid).bytes
        + frame.major.to_bytes(2, "big")
        + frame.minor.to_bytes(2, "big")
        + (frame.measured_power & 0xFF).to_bytes(1, "big")
    )
    return COMPANY_APPLE, body


def encode_eddystone_uid(frame: EddystoneUid) -> bytes:
    return bytes([EDDYSTONE_UID, frame.tx_power & 0xFF]) + frame.namespace + frame.instance + b"\x00\x00"


def encode_eddystone_eid(frame: EddystoneEid) -> bytes:
    return bytes([EDDYSTONE_EID, frame.tx_power & 0xFF]) + frame.eid


def encode_altbeacon(frame: AltBeacon) -> tuple[int, bytes]:
    body = ALTBEACON_PREFIX + frame.beacon_id + bytes([frame.reference_rssi & 0xFF, frame.reserved])
    return frame.company_id, body


def encode_eddystone_url(frame: EddystoneUrl) -> bytes:
    """Shortest encoding: the longest scheme prefix, then expansions wherever they match."""
    scheme = max(
        (i for i, prefix in enumerate(URL_SCHEMES) if frame.url.startswith(prefix)),
        key=lambda i: len(URL_SCHEMES[i]),
    )
    rest = frame.url[len(URL_SCHEMES[scheme]) :]
    encoded = bytearray()
    while rest:
        for code, expansion in sorted(enumerate(URL_EXPANSIONS), key=lambda e: -len(e[1])):
            if rest.startswith(expansion):
                encoded.append(code)
                rest = rest[len(expansion) :]
                break
        else:
            encoded.append(ord(rest[0]))
            rest = rest[1:]
    return bytes([EDDYSTONE_URL, frame.tx_power & 0xFF, scheme]) + bytes(encoded)


def encode_tlm_fields(frame: EddystoneTlm) -> bytes:
    """The 12 bytes after frame type and version: what a beacon encrypts for ETLM."""
    temperature = (
        TLM_TEMPERATURE_UNSUPPORTED
        if frame.temperature_c is None
        else round(frame.temperature_c * 256) & 0xFFFF
    )
    return (
        (frame.battery_mv or 0).to_bytes(2, "big")
        + temperature.to_bytes(2, "big")
        + frame.advertising_count.to_bytes(4, "big")
        + round(frame.uptime_s * 10).to_bytes(4, "big")
    )


def encode_eddystone_tlm(frame: EddystoneTlm) -> bytes:
    return bytes([EDDYSTONE_TLM, TLM_PLAIN]) + encode_tlm_fields(frame)


def encode_eddystone_encrypted_tlm(frame: EddystoneEncryptedTlm) -> bytes:
    return bytes([EDDYSTONE_TLM, TLM_ENCRYPTED]) + frame.ciphertext + frame.salt + frame.mic


def encode_apple_overflow(bits: list[int]) -> tuple[int, bytes]:
    mask = bytearray(16)
    for bit in bits:
        mask[bit // 8] |= 1 << (bit % 8)  # Young's numbering, as AppleOverflow.has_bit
    return COMPANY_APPLE, bytes([APPLE_OVERFLOW_TYPE]) + bytes(mask)
