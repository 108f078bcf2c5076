"""Token windows built in slices: no pause at rotation, resolution while tables are being built."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.core.cipher import BlockCipher
from edge_agent.core.identity import TokenResolver, eid_token
from edge_agent.core.registry import Customer

K = 10
WINDOW = 2**K
NOW = 1_764_000_000


def _key(index: int) -> bytes:
    return hashlib.blake2b(index.to_bytes(4, "big"), digest_size=16).digest()


class CountingCipher:
    """The fast cipher, remembering how many keys each batch had (what one pause costs)."""

    name = "counting"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self._inner: BlockCipher = fastest_cipher()

    def encrypt_many(self, keys: bytes | bytearray, block: bytes) -> bytearray:
        self.batches.append(len(keys) // 16)
        return self._inner.encrypt_many(keys, block)


def _sliced(customers: int, cipher: BlockCipher | None = None) -> TokenResolver:
    resolver = TokenResolver(K, 1, cipher=cipher or fastest_cipher(), sliced=True)
    for index in range(customers):
        resolver.put(Customer(f"c{index}", _key(index), consent_service=True))
    return resolver


def _finish(resolver: TokenResolver, slots: int = 64) -> int:
    slices = 0
    while resolver.precompute(slots):
        slices += 1
    return slices


def test_a_rotation_is_a_swap_when_the_next_window_was_built_ahead() -> None:
    cipher = CountingCipher()
    resolver = _sliced(500, cipher)
    resolver.advance(NOW)
    _finish(resolver)
    assert resolver.windows_built == 4  # three wanted, and the one after them ahead of time
    cipher.batches.clear()
    resolver.advance(NOW + WINDOW)
    # The new farthest window resolves with no AES computed in the rotation itself.
    assert resolver.resolve(eid_token(_key(7), K, NOW + 2 * WINDOW), NOW + WINDOW) == "c7"
    assert cipher.batches == []
    assert resolver.rotations_unready == 0
    assert resolver.ready_windows == 3


def test_every_slice_covers_at_most_the_slots_it_was_given() -> None:
    cipher = CountingCipher()
    resolver = _sliced(1000, cipher)
    resolver.advance(NOW)
    slices = _finish(resolver, slots=100)
    assert max(cipher.batches) <= 100
    assert slices >= 4 * 1000 // 100 - 1  # four windows of 1,000 slots, 100 at a time


def test_at_start_the_current_window_resolves_before_its_neighbours_are_built() -> None:
    resolver = _sliced(300)
    resolver.advance(NOW)  # sliced: queues, computes nothing
    token = eid_token(_key(3), K, NOW)
    assert resolver.resolve(token, NOW) is None
    assert resolver.ready_windows == 0
    while resolver.ready_windows == 0:
        resolver.precompute(50)
    assert resolver.resolve(token, NOW) == "c3"
    assert resolver.resolve(eid_token(_key(3), K, NOW - WINDOW), NOW) is None  # not built yet
    _finish(resolver)
    assert resolver.resolve(eid_token(_key(3), K, NOW - WINDOW), NOW) == "c3"


def test_changes_below_the_cursor_of_a_build_are_patched_into_its_table() -> None:
    resolver = _sliced(300)
    resolver.advance(NOW)
    resolver.precompute(200)
    resolver.put(Customer("c10", _key(10), consent_marketing=True))  # replaced below the cursor
    resolver.remove("c20")
    resolver.put(Customer("c20b", _key(1020), consent_service=True))  # reuses c20's slot
    _finish(resolver, slots=100)
    assert resolver.resolve(eid_token(_key(10), K, NOW), NOW) == "c10"
    assert resolver.resolve(eid_token(_key(20), K, NOW), NOW) is None
    assert resolver.resolve(eid_token(_key(1020), K, NOW), NOW) == "c20b"


def test_a_partly_built_window_answers_for_the_slots_it_covers() -> None:
    resolver = _sliced(300)
    resolver.advance(NOW)
    resolver.precompute(100)  # temporary keys and tokens of slots 0..99 of the current window
    assert resolver.resolve(eid_token(_key(5), K, NOW), NOW) == "c5"
    assert resolver.resolve(eid_token(_key(250), K, NOW), NOW) is None


def test_a_rotation_before_the_build_ahead_finished_is_counted_and_still_resolves() -> None:
    resolver = _sliced(200)
    resolver.advance(NOW)
    while resolver.ready_windows < 3:
        resolver.precompute(50)
    resolver.advance(NOW + WINDOW)  # the window ahead was never started
    assert resolver.rotations_unready == 1
    assert resolver.resolve(eid_token(_key(1), K, NOW + WINDOW), NOW + WINDOW) == "c1"
    _finish(resolver)
    assert resolver.resolve(eid_token(_key(1), K, NOW + 2 * WINDOW), NOW + WINDOW) == "c1"


SPAN = 120
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, SPAN), st.booleans()),
        st.tuples(st.just("remove"), st.integers(0, SPAN), st.booleans()),
        st.tuples(st.just("step"), st.integers(1, 25), st.booleans()),
        st.tuples(st.just("rotate"), st.integers(0, 1), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, temporary_boundary=st.booleans())
def test_sliced_tables_agree_with_the_tokens_whatever_the_registry_does_mid_build(
    ops: list[tuple[str, int, bool]], temporary_boundary: bool
) -> None:
    """Puts and removes between slices (below and above the cursor, across a temporary-key
    period) leave every table equal to what the registry says: never a wrong customer, and
    every consenting one once the builds are done."""
    # Start next to a 65,536 s boundary so the window ahead needs new temporary keys.
    now = ((NOW >> 16) << 16) + 65_536 - 2 * WINDOW if temporary_boundary else NOW
    resolver = TokenResolver(K, 1, cipher=fastest_cipher(), sliced=True)
    truth: dict[int, bool] = {}
    for index in range(0, SPAN, 2):
        resolver.put(Customer(f"c{index}", _key(index), consent_service=True))
        truth[index] = True
    resolver.advance(now)
    for op, value, flag in ops:
        if op == "put":
            resolver.put(Customer(f"c{value}", _key(value), consent_service=flag))
            truth[value] = flag
        elif op == "remove":
            resolver.remove(f"c{value}")
            truth.pop(value, None)
        elif op == "step":
            resolver.precompute(value)
        else:
            now += value * WINDOW
            resolver.advance(now)
        got = resolver.resolve(eid_token(_key(value), K, now), now)
        assert got in (None, f"c{value}")
        assert got is None or truth.get(value)
    _finish(resolver, slots=7)
    for index in range(SPAN + 1):
        for offset in (-WINDOW, 0, WINDOW):
            got = resolver.resolve(eid_token(_key(index), K, now + offset), now)
            assert got == (f"c{index}" if truth.get(index) else None), (index, offset)


def test_until_the_window_of_now_is_built_the_resolver_says_so() -> None:
    """What the daemon's main loop reads to put slices between sightings, not only when idle."""
    resolver = TokenResolver(K, 1, cipher=fastest_cipher(), sliced=True)
    assert resolver.current_ready  # nothing to resolve, nothing to build
    resolver.put(Customer("c1", _key(1), consent_service=True))
    assert not resolver.current_ready
    resolver.advance(NOW)
    resolver.precompute()  # one slice covers a small registry's current window
    assert resolver.current_ready
    assert resolver.resolve(eid_token(_key(1), K, NOW), NOW) == "c1"


def test_a_sighting_queued_behind_the_rotation_changes_no_table() -> None:
    """A busy loop hands the resolver sightings stamped before the rotation after it has looked at
    the time after it. Going back a window for them and forward again at the next look dropped
    and rebuilt the window ahead each time: at a million customers the rebuilds outran the clock
    and nobody resolved (seen in the week benchmark, tens of thousands of unready rotations a
    day). The older sighting resolves from the windows held, and nothing is rebuilt."""
    resolver = _sliced(200)
    rotation = ((NOW >> K) + 1) << K
    resolver.advance(rotation - 10)
    _finish(resolver)
    resolver.advance(rotation)
    _finish(resolver)  # the new window ahead
    built = resolver.windows_built
    for n in range(20):
        late = rotation - 1 - n  # stamped in the window before, handled after the rotation
        assert resolver.resolve(eid_token(_key(n), K, late), late) == f"c{n}"
        assert resolver.resolve(eid_token(_key(n), K, rotation), rotation) == f"c{n}"
    assert resolver.rotations_unready == 0
    assert not resolver.pending  # every window held stayed held
    assert resolver.windows_built == built
    # A time further back than the skew windows is a clock that went back: the tables follow it.
    resolver.advance(NOW - 3 * WINDOW)
    assert resolver.pending
    _finish(resolver)
    assert resolver.resolve(eid_token(_key(3), K, NOW - 3 * WINDOW), NOW - 3 * WINDOW) == "c3"


def _outputs(resolver: TokenResolver, window: int, keys: bytes) -> tuple[bytearray, bytearray]:
    """What the daemon's AES worker answers for ``keys``: temporary keys, then tokens."""
    first, second = resolver.plaintexts(window)
    temporary = fastest_cipher().encrypt_many(keys, first)
    return temporary, fastest_cipher().encrypt_many(temporary, second)


def test_outputs_computed_elsewhere_are_taken_only_where_they_continue_the_build() -> None:
    """The start's worker encrypts pages of the registry while it is read; the window of now
    takes them only in order, for the slots they were computed for: anything else (a page that
    landed elsewhere, a window no longer wanted) is refused and built in slices."""
    resolver = _sliced(300)
    resolver.advance(NOW)
    window = resolver.current_window
    assert window is not None
    ids = [f"c{n}" for n in range(300)]
    keys = b"".join(_key(n) for n in range(300))
    first, rest = _outputs(resolver, window, keys[: 100 * 16]), _outputs(resolver, window, keys[100 * 16 :])
    assert not resolver.take_precomputed(window, 100, ids[100:], *rest)  # not where the build is
    assert not resolver.take_precomputed(window + 9, 0, ids[:100], *first)  # a window not wanted
    assert not resolver.take_precomputed(window, 0, ids[1:101], *first)  # other customers' slots
    assert resolver.take_precomputed(window, 0, ids[:100], *first)
    assert resolver.resolve(eid_token(_key(5), K, NOW), NOW) == "c5"
    assert not resolver.current_ready
    assert resolver.take_precomputed(window, 100, ids[100:], *rest)
    assert resolver.current_ready  # complete with no slice run
    _finish(resolver)
    for n in range(300):
        for offset in (-WINDOW, 0, WINDOW):
            assert resolver.resolve(eid_token(_key(n), K, NOW + offset), NOW) == f"c{n}"


def test_a_rotation_builds_the_new_window_in_the_arrays_of_the_one_it_dropped() -> None:
    """Fresh arrays for a million customers' window are 24 MB zeroed and faulted in within one
    slice (15 ms); the window a rotation drops is emptied and reused instead, and answers only
    for the new window's tokens."""
    resolver = _sliced(300)
    resolver.advance(NOW)
    _finish(resolver)
    oldest = min(resolver._tables)
    dropped = resolver._tables[oldest]
    resolver.advance(NOW + WINDOW)
    resolver.precompute(1)  # the new window ahead starts
    building = next(iter(resolver._queue.values()))
    assert building is not None
    assert building.table is dropped
    _finish(resolver)
    for n in range(300):
        assert resolver.resolve(eid_token(_key(n), K, NOW - WINDOW), NOW + WINDOW) is None  # dropped
        assert resolver.resolve(eid_token(_key(n), K, NOW + 3 * WINDOW), NOW + WINDOW) == f"c{n}"
