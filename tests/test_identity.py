"""Rotating-token resolution: consenting customers resolve, with one window of clock skew."""

from __future__ import annotations

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
