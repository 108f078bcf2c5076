"""Encrypted Eddystone-TLM: AES-EAX with the beacon's identity key. Pure: bytes and time in.

eddystone-tlm/tlm-encrypted.md: the beacon encrypts the 12 plain TLM bytes with AES-EAX under
its identity key, with a 48-bit nonce made of the EID time base with its low K bits cleared
(32 bits, the same truncation as the EID computation) and 16 random bits of salt, no header,
and sends the ciphertext, the salt and the first 16 bits of the tag (the MIC).

EAX (Bellare, Rogaway, Wagner, "The EAX Mode of Operation", 2004) is built here from the two
primitives ``cryptography`` offers: OMAC is CMAC over ``[t]_16 || data`` and the payload is
AES-CTR from the nonce's OMAC, so no extra dependency carries the mode.
"""

from __future__ import annotations

import hmac
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from edge_agent.core.frames import (
    TLM_FIELDS_LENGTH,
    EddystoneEncryptedTlm,
    EddystoneTlm,
    NotThisFrame,
    decode_tlm_fields,
    encode_tlm_fields,
)

BLOCK: Final = 16
MIC_BYTES: Final = 2
SALT_BYTES: Final = 2


def _omac(key: bytes, tweak: int, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(bytes(BLOCK - 1) + bytes([tweak]) + data)
    return mac.finalize()


def _ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    transform = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return transform.update(data) + transform.finalize()


def _xor(*blocks: bytes) -> bytes:
    out = bytearray(BLOCK)
    for block in blocks:
        for i, byte in enumerate(block):
            out[i] ^= byte
    return bytes(out)


def eax_encrypt(key: bytes, nonce: bytes, plaintext: bytes, header: bytes = b"") -> tuple[bytes, bytes]:
    """(ciphertext, full 16-byte tag); truncate the tag as the protocol says."""
    counter = _omac(key, 0, nonce)
    ciphertext = _ctr(key, counter, plaintext)
    return ciphertext, _xor(counter, _omac(key, 1, header), _omac(key, 2, ciphertext))


def eax_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, header: bytes = b"") -> bytes | None:
    """The plaintext, or None when ``tag`` (any length, a prefix of the full tag) does not match."""
    counter = _omac(key, 0, nonce)
    full = _xor(counter, _omac(key, 1, header), _omac(key, 2, ciphertext))
    if not tag or not hmac.compare_digest(full[: len(tag)], tag):
        return None
    return _ctr(key, counter, ciphertext)


def etlm_nonce(time_s: int, rotation_exponent: int, salt: bytes) -> bytes:
    """48 bits: the 32-bit EID time with its low K bits cleared, then the 16-bit salt."""
    cleared = ((time_s & 0xFFFFFFFF) >> rotation_exponent) << rotation_exponent
    return cleared.to_bytes(4, "big") + salt


def encrypt_tlm(
    frame: EddystoneTlm, identity_key: bytes, time_s: int, rotation_exponent: int, salt: bytes
) -> EddystoneEncryptedTlm:
    """What a beacon sends (the simulator's and the tests' side of the protocol)."""
    if len(salt) != SALT_BYTES:
        raise ValueError("salt must be 2 bytes")
    nonce = etlm_nonce(time_s, rotation_exponent, salt)
    ciphertext, tag = eax_encrypt(identity_key, nonce, encode_tlm_fields(frame))
    return EddystoneEncryptedTlm(ciphertext, salt, tag[:MIC_BYTES])


def decrypt_tlm(
    frame: EddystoneEncryptedTlm, identity_key: bytes, time_s: int, rotation_exponent: int
) -> EddystoneTlm | NotThisFrame:
    """The telemetry, if the MIC verifies under this key at this EID time window."""
    if len(frame.ciphertext) != TLM_FIELDS_LENGTH or len(frame.mic) != MIC_BYTES:
        return NotThisFrame("encrypted Eddystone-TLM has the wrong field lengths")
    nonce = etlm_nonce(time_s, rotation_exponent, frame.salt)
    plain = eax_decrypt(identity_key, nonce, frame.ciphertext, frame.mic)
    if plain is None:
        return NotThisFrame("encrypted Eddystone-TLM does not verify under this key and time")
    return decode_tlm_fields(plain)
