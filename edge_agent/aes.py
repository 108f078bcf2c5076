"""One AES-128 block under many keys: what rebuilding the EID tables needs, made fast.

Every window every registered customer's token is one AES block under that customer's own key,
so a table for a million customers is a million key schedules. ``cryptography`` builds a cipher
context per key, about 7 µs each on the store box (measured): 7 s per window. OpenSSL's
low-level ``AES_set_encrypt_key``/``AES_encrypt`` from the system libcrypto, called through
ctypes, do the same in about 1.2 µs. They are deprecated in OpenSSL 3 but still exported; the
fast path is used only after it passes the FIPS-197 known-answer test at import, and
``cryptography`` remains the fallback (and the reference the tests compare against).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
# FIPS-197 appendix C.1, AES-128.
_KAT_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
_KAT_PLAIN = bytes.fromhex("00112233445566778899aabbccddeeff")
_KAT_CIPHER = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
# sizeof(AES_KEY) is 244 bytes in OpenSSL 1.1 and 3.x; a little headroom costs nothing.
_AES_KEY_SIZE = 256


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """AES-128-ECB of one block with ``cryptography``: the reference path."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _encrypt_many_reference(keys: bytes | bytearray, block: bytes) -> bytearray:
    out = bytearray(len(keys))
    for offset in range(0, len(keys), BLOCK):
        out[offset : offset + BLOCK] = encrypt_block(bytes(keys[offset : offset + BLOCK]), block)
    return out


def _openssl_encrypt_many() -> Callable[[bytes | bytearray, bytes], bytearray] | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        libcrypto = ctypes.CDLL(name)
        set_key = libcrypto.AES_set_encrypt_key
        encrypt = libcrypto.AES_encrypt
    except (OSError, AttributeError):
        return None
    # Every argument is a bytes object or a ctypes buffer (passed as a pointer) or the small int
    # 128, so ctypes' default conversions are exact and cheaper than declared argtypes.
    encrypt.restype = None

    def encrypt_many(keys: bytes | bytearray, block: bytes) -> bytearray:
        # Plain bytes arguments and one reused output buffer: ctypes converts these fastest
        # (about 1.3-2 µs per key here; declared pointer argtypes add ~0.5 µs).
        keys = bytes(keys)
        schedule = ctypes.create_string_buffer(_AES_KEY_SIZE)
        result = ctypes.create_string_buffer(BLOCK)
        out = bytearray(len(keys))
        for offset in range(0, len(keys), BLOCK):
            set_key(keys[offset : offset + BLOCK], 128, schedule)
            encrypt(block, result, schedule)
            out[offset : offset + BLOCK] = result.raw
        return out

    try:
        if encrypt_many(_KAT_KEY, _KAT_PLAIN) != _KAT_CIPHER:
            return None
    except Exception:  # any surprise from a foreign library means "do not use it"
        return None
    return encrypt_many


_FAST = _openssl_encrypt_many()
BACKEND = "openssl-ctypes" if _FAST is not None else "cryptography"


def encrypt_many(keys: bytes | bytearray, block: bytes) -> bytearray:
    """Encrypt ``block`` under each consecutive 16-byte key in ``keys``; results in the same order."""
    if len(keys) % BLOCK or len(block) != BLOCK:
        raise ValueError("keys must be whole 16-byte keys and block exactly 16 bytes")
    if _FAST is not None:
        return _FAST(keys, block)
    return _encrypt_many_reference(keys, block)
