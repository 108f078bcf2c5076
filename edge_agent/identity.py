"""Who is this phone? Rotating-token resolution for consenting customers, hashing for the rest.

Phones randomise their Bluetooth address every few minutes, so identity comes from a 16-byte
identity key provisioned by HQ per consenting customer and turned into short-lived tokens with
the public Eddystone-EID computation (github.com/google/eddystone, eid/eid-computation.md):

    temporary key = AES-128(identity key, 00*11 | FF | 00 00 | time[31:16])
    token         = AES-128(temporary key, 00*11 | K | time with its low K bits cleared)[:8]

The resolver keeps, for the current rotation window and its neighbours, a dictionary from token
to customer, so resolving an advertisement is one look-up. A window is computed once when the
clock first reaches it; registry changes patch every table in place.

Everybody else is counted, not tracked: a keyed hash with a salt that is drawn at random for
each local day, kept only in memory and never sent anywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

IDENTITY_KEY_BYTES = 16
TOKEN_BYTES = 8


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    # repr=False: a customer printed in a log or traceback must not show the key.
    identity_key: bytes = b""
    consent_service: bool = False
    consent_marketing: bool = False

    def __repr__(self) -> str:
        return (
            f"Customer({self.customer_id!r}, service={self.consent_service}, "
            f"marketing={self.consent_marketing})"
        )

    @property
    def resolvable(self) -> bool:
        """Only a customer who agreed to at least one purpose may be recognised at all."""
        return self.consent_service or self.consent_marketing


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def temporary_key(identity_key: bytes, time_s: int) -> bytes:
    block = b"\x00" * 11 + b"\xff" + b"\x00\x00" + ((time_s >> 16) & 0xFFFF).to_bytes(2, "big")
    return _aes_block(identity_key, block)


def eid_token(identity_key: bytes, rotation_exponent: int, time_s: int) -> bytes:
    """The 8-byte token a phone advertises at ``time_s`` (32-bit seconds)."""
    time_s &= 0xFFFFFFFF
    cleared = (time_s >> rotation_exponent) << rotation_exponent
    block = b"\x00" * 11 + bytes([rotation_exponent]) + cleared.to_bytes(4, "big")
    return _aes_block(temporary_key(identity_key, time_s), block)[:TOKEN_BYTES]


class TokenResolver:
    """Token -> customer id for the current window and ``skew`` windows either side."""

    def __init__(self, rotation_exponent: int, skew_windows: int) -> None:
        self._k = rotation_exponent
        self._skew = skew_windows
        self._keys: dict[str, bytes] = {}
        self._tables: dict[int, dict[bytes, str]] = {}
        # Temporary keys change every 65,536 s, far slower than windows: cache them.
        self._temporary: dict[tuple[str, int], bytes] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def set(self, customer_id: str, identity_key: bytes) -> None:
        self.remove(customer_id)
        self._keys[customer_id] = identity_key
        for window, table in self._tables.items():
            table[self._token(customer_id, identity_key, window)] = customer_id

    def remove(self, customer_id: str) -> None:
        if self._keys.pop(customer_id, None) is None:
            return
        for table in self._tables.values():
            for token in [t for t, c in table.items() if c == customer_id]:
                del table[token]
        self._temporary = {k: v for k, v in self._temporary.items() if k[0] != customer_id}

    def resolve(self, token: bytes, now: float) -> str | None:
        self.advance(now)
        for table in self._tables.values():
            customer = table.get(token)
            if customer is not None:
                return customer
        return None

    def advance(self, now: float) -> None:
        """Make sure the windows around ``now`` exist and older ones are dropped."""
        current = (int(now) & 0xFFFFFFFF) >> self._k
        wanted = range(current - self._skew, current + self._skew + 1)
        if all(w in self._tables for w in wanted) and len(self._tables) == len(wanted):
            return
        self._tables = {w: self._tables[w] if w in self._tables else self._build(w) for w in wanted if w >= 0}

    def _build(self, window: int) -> dict[bytes, str]:
        return {self._token(cid, key, window): cid for cid, key in self._keys.items()}

    def _token(self, customer_id: str, identity_key: bytes, window: int) -> bytes:
        time_s = window << self._k
        cache_key = (customer_id, time_s >> 16)
        temp = self._temporary.get(cache_key)
        if temp is None:
            temp = self._temporary[cache_key] = temporary_key(identity_key, time_s)
        block = b"\x00" * 11 + bytes([self._k]) + time_s.to_bytes(4, "big")
        return _aes_block(temp, block)[:TOKEN_BYTES]


class AnonymousHasher:
    """Daily-salted pseudonyms for people we may count but must not recognise tomorrow."""

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes
        self._day: int | None = None
        self._salt = b""

    def pseudonym(self, local_day: int, material: bytes) -> str:
        if local_day != self._day:
            self._day, self._salt = local_day, self._random_bytes(16)
        return hashlib.blake2b(material, key=self._salt, digest_size=8).hexdigest()
