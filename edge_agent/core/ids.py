"""Sortable unique event ids (ULID: 48-bit millisecond time + 80 random bits, Crockford base32).

HQ deduplicates on ``event_id`` and sorts by it, so ids must be unique and time-ordered. The
randomness is injected: production uses ``secrets.token_bytes``, replay uses a seeded stream so the
same trace always yields the same ids (deterministic replays diff cleanly).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BYTES = 10


def encode_ulid(ms: int, randomness: bytes) -> str:
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(randomness[:_RANDOM_BYTES], "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class EventIdFactory:
    """Makes ids for events stamped with the (possibly simulated) time they happened."""

    def __init__(self, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._random_bytes = random_bytes

    @classmethod
    def seeded(cls, seed: str) -> EventIdFactory:
        counter = 0

        def stream(n: int) -> bytes:
            nonlocal counter
            counter += 1
            return hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=n).digest()

        return cls(stream)

    def new(self, ts: float) -> str:
        return encode_ulid(int(ts * 1000), self._random_bytes(_RANDOM_BYTES))

    def random(self, n: int) -> bytes:
        """Secret bytes from the same source (anonymous-hash salts), so replays stay deterministic."""
        return self._random_bytes(n)
