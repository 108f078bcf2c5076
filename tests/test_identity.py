"""Rotating-token resolution: consenting customers resolve, with one window of clock skew."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.identity import AnonymousHasher, TokenResolver, eid_token, temporary_key

KEY = bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0")
K = 10
NOW = 1_764_000_000


def test_token_is_eight_bytes_and_constant_within_a_window() -> None:
    window_start = (NOW >> K) << K
    token = eid_token(KEY, K, window_start)
    assert len(token) == 8
    assert eid_token(KEY, K, window_start + 2**K - 1) == token
    assert eid_token(KEY, K, window_start + 2**K) != token


def test_temporary_key_changes_only_every_65536_seconds() -> None:
    base = (NOW >> 16) << 16
    assert temporary_key(KEY, base) == temporary_key(KEY, base + 65_535)
    assert temporary_key(KEY, base) != temporary_key(KEY, base + 65_536)


def test_resolver_tolerates_one_window_of_skew_but_not_two() -> None:
    resolver = TokenResolver(rotation_exponent=K, skew_windows=1)
    resolver.set("alice", KEY)
    window = 2**K
    assert resolver.resolve(eid_token(KEY, K, NOW), NOW) == "alice"
    assert resolver.resolve(eid_token(KEY, K, NOW - window), NOW) == "alice"
    assert resolver.resolve(eid_token(KEY, K, NOW + window), NOW) == "alice"
    assert resolver.resolve(eid_token(KEY, K, NOW - 2 * window), NOW) is None
    assert resolver.resolve(eid_token(KEY, K, NOW + 2 * window), NOW) is None


def test_removed_customer_no_longer_resolves() -> None:
    resolver = TokenResolver(rotation_exponent=K, skew_windows=1)
    resolver.set("alice", KEY)
    token = eid_token(KEY, K, NOW)
    assert resolver.resolve(token, NOW) == "alice"
    resolver.remove("alice")
    assert resolver.resolve(token, NOW) is None
    assert len(resolver) == 0


def test_customer_added_after_tables_exist_resolves_at_once() -> None:
    resolver = TokenResolver(rotation_exponent=K, skew_windows=1)
    resolver.advance(NOW)
    resolver.set("bob", KEY)
    assert resolver.resolve(eid_token(KEY, K, NOW), NOW) == "bob"


def test_anonymous_pseudonyms_are_stable_within_a_day_and_change_across_days() -> None:
    salts = iter([b"a" * 16, b"b" * 16])
    hasher = AnonymousHasher(lambda n: next(salts))
    first = hasher.pseudonym(739_000, b"addr:AA")
    assert hasher.pseudonym(739_000, b"addr:AA") == first
    assert hasher.pseudonym(739_001, b"addr:AA") != first


# The Eddystone project's reference computation, transliterated line by line to Python 3 from
# GetAndPrintEid() in github.com/google/eddystone eddystone-eid/tools/eidtools.py (the repository
# publishes the algorithm as this tool, not as fixed vectors). Kept deliberately literal: byte
# arithmetic by division, as the reference does it, so it shares no code with ours.
def _reference_eid(ik: bytes, scaler: int, beacon_time_seconds: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def aes_ecb(key: bytes, data: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        return encryptor.update(data) + encryptor.finalize()

    tkdata = (
        b"\x00" * 11 + b"\xff" + b"\x00" * 2
        + bytes([(beacon_time_seconds // (2**24)) % 256])
        + bytes([(beacon_time_seconds // (2**16)) % 256])
    )  # fmt: skip
    tk = aes_ecb(ik, tkdata)
    beacon_time_seconds = (beacon_time_seconds // 2**scaler) * (2**scaler)
    eiddata = (
        b"\x00" * 11 + bytes([scaler])
        + bytes([(beacon_time_seconds // (2**24)) % 256])
        + bytes([(beacon_time_seconds // (2**16)) % 256])
        + bytes([(beacon_time_seconds // (2**8)) % 256])
        + bytes([(beacon_time_seconds // (2**0)) % 256])
    )  # fmt: skip
    return aes_ecb(tk, eiddata)[:8]


@given(st.binary(min_size=16, max_size=16), st.integers(0, 15), st.integers(0, 2**32 - 1))
def test_tokens_match_the_eddystone_reference_computation(ik: bytes, k: int, time_s: int) -> None:
    assert eid_token(ik, k, time_s) == _reference_eid(ik, k, time_s)


@given(st.binary(min_size=16, max_size=16), st.integers(0, 15), st.integers(2**16, 2**32 - 2**16))
def test_resolver_tables_hold_the_reference_tokens(ik: bytes, k: int, time_s: int) -> None:
    resolver = TokenResolver(rotation_exponent=k, skew_windows=1)
    resolver.set("alice", ik)
    assert resolver.resolve(_reference_eid(ik, k, time_s), float(time_s)) == "alice"
