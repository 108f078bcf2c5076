"""Rotating-token resolution: consenting customers resolve, with one window of clock skew."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.core.cipher import REFERENCE, encrypt_block
from edge_agent.core.identity import AnonymousHasher, TokenResolver, eid_token, temporary_key
from edge_agent.core.registry import Customer, CustomerPage
from edge_agent.core.token_table import TokenTable

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
    resolver.put(Customer("alice", KEY, consent_service=True))
    window = 2**K
    assert resolver.resolve(eid_token(KEY, K, NOW), NOW) == "alice"
    assert resolver.resolve(eid_token(KEY, K, NOW - window), NOW) == "alice"
    assert resolver.resolve(eid_token(KEY, K, NOW + window), NOW) == "alice"
    assert resolver.resolve(eid_token(KEY, K, NOW - 2 * window), NOW) is None
    assert resolver.resolve(eid_token(KEY, K, NOW + 2 * window), NOW) is None


def test_removed_customer_no_longer_resolves() -> None:
    resolver = TokenResolver(rotation_exponent=K, skew_windows=1)
    resolver.put(Customer("alice", KEY, consent_service=True))
    token = eid_token(KEY, K, NOW)
    assert resolver.resolve(token, NOW) == "alice"
    resolver.remove("alice")
    assert resolver.resolve(token, NOW) is None
    assert len(resolver) == 0


def test_customer_added_after_tables_exist_resolves_at_once() -> None:
    resolver = TokenResolver(rotation_exponent=K, skew_windows=1)
    resolver.advance(NOW)
    resolver.put(Customer("bob", KEY, consent_service=True))
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
    resolver.put(Customer("alice", ik, consent_service=True))
    assert resolver.resolve(_reference_eid(ik, k, time_s), float(time_s)) == "alice"


@given(st.lists(st.binary(min_size=16, max_size=16), max_size=20), st.binary(min_size=16, max_size=16))
def test_batch_aes_matches_the_reference_cipher(keys: list[bytes], block: bytes) -> None:
    expected = b"".join(encrypt_block(k, block) for k in keys)
    assert fastest_cipher().encrypt_many(b"".join(keys), block) == expected
    assert REFERENCE.encrypt_many(b"".join(keys), block) == expected


def test_the_fast_aes_path_is_in_use_on_this_machine() -> None:
    # Debian ships libcrypto 3; if this fails the agent still works, ~5x slower to rebuild tables.
    assert fastest_cipher().name == "openssl-ctypes"


def test_table_survives_churn_like_a_dict() -> None:
    table = TokenTable()
    expected: dict[int, int] = {}
    rng = random.Random(3)
    for step in range(20_000):
        number = rng.getrandbits(64)
        if expected and step % 3 == 0:
            gone = rng.choice(list(expected))
            table.discard(gone, expected.pop(gone))
        else:
            table.add(number, step)
            expected[number] = step
    assert len(table) == len(expected)
    assert all(table.get(n) == s for n, s in expected.items())
    assert table.get(rng.getrandbits(64)) is None


def test_registry_changes_patch_live_tables_exactly_as_a_rebuild_would() -> None:
    keys = {f"c{i}": bytes([i]) * 16 for i in range(1, 40)}
    patched = TokenResolver(rotation_exponent=K, skew_windows=1)
    patched.advance(NOW)
    for customer_id, key in keys.items():
        patched.put(Customer(customer_id, key, consent_service=True))
    for gone in ("c3", "c7", "c11"):
        patched.remove(gone)
    patched.put(Customer("c5", keys["c5"]))  # consent withdrawn: stays registered, not resolvable
    patched.put(Customer("c40", bytes([40]) * 16, consent_marketing=True))  # reuses a freed slot
    rebuilt = TokenResolver(rotation_exponent=K, skew_windows=1)
    for customer_id in patched.registry:
        customer = patched.registry.get(customer_id)
        assert customer is not None
        rebuilt.put(customer)
    for customer_id in [*keys, "c40"]:
        key = keys.get(customer_id, bytes([40]) * 16)
        for offset in (-(2**K), 0, 2**K):
            token = eid_token(key, K, NOW + offset)
            assert patched.resolve(token, NOW) == rebuilt.resolve(token, NOW)
    assert patched.resolve(eid_token(keys["c1"], K, NOW), NOW) == "c1"
    assert patched.resolve(eid_token(keys["c5"], K, NOW), NOW) is None
    assert patched.resolve(eid_token(keys["c7"], K, NOW), NOW) is None
    assert patched.resolve(eid_token(bytes([40]) * 16, K, NOW), NOW) == "c40"
    assert len(patched) == len(keys) - 3 + 1


def test_rotation_builds_one_new_window_and_keys_never_appear_in_reprs() -> None:
    resolver = TokenResolver(rotation_exponent=K, skew_windows=1)
    resolver.put(Customer("alice", KEY, consent_service=True))
    resolver.advance(NOW)
    assert resolver.windows_built == 3
    resolver.advance(NOW + 2**K)
    assert resolver.windows_built == 4
    assert KEY.hex() not in repr(resolver.registry.get("alice"))


def test_cached_pseudonyms_equal_fresh_ones_and_forget_yesterday() -> None:
    salts = iter([b"a" * 16, b"b" * 16])
    hasher = AnonymousHasher(lambda n: next(salts))
    first = hasher.for_address(739_000, "4f:1a:00:00:00:01")
    assert hasher.for_address(739_000, "4F:1A:00:00:00:01") == first  # case-insensitive
    assert hasher.pseudonym(739_000, b"addr:4F:1A:00:00:00:01") == first
    assert hasher.for_token(739_000, b"\x01" * 8) != first
    assert hasher.for_address(739_001, "4F:1A:00:00:00:01") != first


def test_the_tick_builds_the_next_window_before_any_token_is_heard() -> None:
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.store import StoreCore
    from tests.conftest import make_config

    core = StoreCore(make_config(Path("/nonexistent")), EventIdFactory.seeded("t"))
    core.load([Customer("alice", KEY, consent_service=True)], [], None)
    core.tick(NOW)
    built = core._resolver.windows_built
    core.tick(NOW + 2**K)  # a boundary passes with nobody in the store
    assert core._resolver.windows_built == built + 1


def _rows() -> list[tuple[str, bytes, int, int]]:
    keys = [bytes([n]) * 16 for n in range(1, 7)]
    return [
        ("both", keys[0], 1, 1),
        ("service", keys[1], 1, 0),
        ("marketing", keys[2], 0, 1),
        ("nobody", keys[3], 0, 0),  # kept, never recognised
        ("again", keys[4], 0, 0),
        ("again", keys[5], 1, 0),  # the same id twice: the later row wins, as a second put would
    ]


def test_a_bulk_load_recognises_exactly_whom_putting_each_customer_would() -> None:
    one_by_one = TokenResolver(K, 1, cipher=fastest_cipher())
    for customer_id, key, service, marketing in _rows():
        one_by_one.put(Customer(customer_id, key, bool(service), bool(marketing)))
    bulk = TokenResolver(K, 1, cipher=fastest_cipher(), sliced=True)
    unresolvable = bulk.load(_rows())
    assert unresolvable == ["nobody", "again"]  # each dropped from visits and rules by the caller
    assert sorted(bulk.registry) == sorted(one_by_one.registry)
    for customer_id in one_by_one.registry:
        assert bulk.registry.get(customer_id) == one_by_one.registry.get(customer_id)
    bulk.advance(NOW)
    while bulk.precompute():  # the daemon's slices, from the loaded buffers
        pass
    for _, key, _, _ in _rows():
        for skew in (-(2**K), 0, 2**K):
            token = eid_token(key, K, NOW + skew)
            assert bulk.resolve(token, NOW) == one_by_one.resolve(token, NOW)
    assert bulk.resolve(eid_token(_rows()[0][1], K, NOW), NOW) == "both"
    assert bulk.resolve(eid_token(_rows()[3][1], K, NOW), NOW) is None
    assert bulk.resolve(eid_token(_rows()[5][1], K, NOW), NOW) == "again"


def test_a_bulk_load_into_live_tables_resolves_at_once_and_names_a_bad_key() -> None:
    resolver = TokenResolver(K, 1, cipher=fastest_cipher())
    resolver.put(Customer("first", KEY, consent_service=True))
    resolver.resolve(eid_token(KEY, K, NOW), NOW)  # the windows exist now
    assert resolver.load(_rows()[:2]) == []
    assert resolver.resolve(eid_token(_rows()[1][1], K, NOW), NOW) == "service"
    with pytest.raises(ValueError, match="'short'"):
        TokenResolver(K, 1).load([("short", b"\x01" * 15, 1, 0)])


def test_loading_a_customer_without_consent_drops_their_kept_visit_row() -> None:
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.store import StoreCore
    from tests.conftest import make_config

    core = StoreCore(make_config(Path("/nonexistent")), EventIdFactory.seeded("t"))
    core.load_registry([CustomerPage.of_rows(_rows())])
    assert core.changed_visits == {"nobody", "again"}  # rewritten (deleted) at the next commit
    assert core.customers.get("again") == Customer("again", _rows()[5][1], consent_service=True)


def test_a_page_load_registers_exactly_what_a_row_load_does() -> None:
    """Pages (how a start reads the registry) against rows, through both of a page's paths: bulk
    into an empty registry, and row by row where an id is known already or one repeats."""
    by_rows = TokenResolver(K, 1, cipher=fastest_cipher())
    row_unresolvable = by_rows.load(_rows())
    by_pages = TokenResolver(K, 1, cipher=fastest_cipher())
    unique = [row for row in _rows() if row[0] != "again"]
    pages = [CustomerPage.of_rows(unique[:2]), CustomerPage.of_rows(unique[2:]),
             CustomerPage.of_rows(_rows()[4:])]  # fmt: skip
    assert by_pages.load_pages(pages) == row_unresolvable == ["nobody", "again"]
    assert list(by_pages.registry) == list(by_rows.registry)
    for customer_id in by_rows.registry:
        assert by_pages.registry.get(customer_id) == by_rows.registry.get(customer_id)
    for _, key, _, _ in _rows():
        token = eid_token(key, K, NOW)
        assert by_pages.resolve(token, NOW) == by_rows.resolve(token, NOW)
    with pytest.raises(ValueError, match="'short'"):
        CustomerPage.of_rows([("short", b"\x01" * 15, 1, 0)])


def test_a_page_that_replaces_a_customer_below_a_build_under_way_is_patched_into_it() -> None:
    """Pages go straight into the registry's buffers only while nothing is built: once a build
    has covered a slot, a page replacing that customer's key must reach the build, or the window
    keeps the old token and the customer stops resolving."""
    resolver = TokenResolver(K, 1, cipher=fastest_cipher(), sliced=True)
    resolver.load_pages([CustomerPage.of_rows([(f"c{n}", bytes([n + 1]) * 16, 1, 0) for n in range(100)])])
    resolver.advance(NOW)
    resolver.precompute(50)  # the window of now covers slots 0..49 and is not done
    new_key = bytes([200]) * 16
    resolver.load_pages([CustomerPage.of_rows([("c5", new_key, 1, 0), ("c100", bytes([201]) * 16, 1, 0)])])
    while resolver.precompute():
        pass
    assert resolver.resolve(eid_token(new_key, K, NOW), NOW) == "c5"
    assert resolver.resolve(eid_token(bytes([6]) * 16, K, NOW), NOW) is None  # the old key
    assert resolver.resolve(eid_token(bytes([201]) * 16, K, NOW), NOW) == "c100"
