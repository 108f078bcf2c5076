"""AES-128 of one block under many keys: what the EID token tables need. Pure.

Every window every registered customer's token is one AES block under that customer's own key,
so a table for a million customers is a million key schedules. The core asks a ``BlockCipher``
for them; this module's ``ReferenceCipher`` uses ``cryptography`` (a cipher context per key,
about 7 µs each on the store box). The daemon injects a faster one (``adapters.aes_openssl``:
OpenSSL's low-level AES through ctypes, about 1.2 µs), chosen when the agent is assembled and
never at import, so the core loads no foreign library and runs no subprocess.
"""

from __future__ import annotations

from typing import Final, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK: Final = 16
# FIPS-197 appendix C.1, AES-128: the known answer any backend must give before it is used.
KAT_KEY: Final = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KAT_PLAIN: Final = bytes.fromhex("00112233445566778899aabbccddeeff")
KAT_CIPHER: Final = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


class BlockCipher(Protocol):
    """One AES-128 block under each consecutive 16-byte key of ``keys``."""

    name: str

    def encrypt_many(self, keys: bytes | bytearray, block: bytes) -> bytearray: ...


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """AES-128-ECB of one block with ``cryptography``: the reference path."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def check_batch(keys: bytes | bytearray, block: bytes) -> None:
    if len(keys) % BLOCK or len(block) != BLOCK:
        raise ValueError("keys must be whole 16-byte keys and block exactly 16 bytes")


class ReferenceCipher:
    """``cryptography``, one context per key: correct everywhere, slow for big registries."""

    name = "cryptography"

    def encrypt_many(self, keys: bytes | bytearray, block: bytes) -> bytearray:
        check_batch(keys, block)
        out = bytearray(len(keys))
        for offset in range(0, len(keys), BLOCK):
            out[offset : offset + BLOCK] = encrypt_block(bytes(keys[offset : offset + BLOCK]), block)
        return out


REFERENCE: Final = ReferenceCipher()
