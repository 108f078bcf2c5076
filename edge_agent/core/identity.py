"""Who is this phone? Rotating-token resolution for consenting customers, hashing for the rest.

Phones randomise their Bluetooth address every few minutes, so identity comes from a 16-byte
identity key provisioned by HQ per consenting customer and turned into short-lived tokens with
the public Eddystone-EID computation (github.com/google/eddystone, eid/eid-computation.md):

    temporary key = AES-128(identity key, 00*11 | FF | 00 00 | time[31:16])
    token         = AES-128(temporary key, 00*11 | K | time with its low K bits cleared)[:8]

The resolver keeps, for the current rotation window and its neighbours, a hash table from token
to customer, so resolving an advertisement is a constant number of array reads. A window is
computed once when the clock first reaches it (a rotation computes one new window, in one batch
of AES blocks, see ``aes``); registry changes patch every table in place.

Sized for a chain's whole loyalty base on a Raspberry Pi: the registry (``core.registry``) and
each window's table (``core.token_table``) are flat buffers and arrays, about 16 bytes of key per
customer and 24 bytes per table entry, instead of the few hundred bytes per entry that
dictionaries of Python objects cost.

Everybody else is counted, not tracked: a keyed hash with a salt that is drawn at random for
each local day, kept only in memory and never sent anywhere.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable

from edge_agent.core.cipher import BLOCK, REFERENCE, BlockCipher, encrypt_block
from edge_agent.core.const import TOKEN_SLICE_SLOTS
from edge_agent.core.registry import Customer, CustomerPage, CustomerRow, Registry
from edge_agent.core.token_build import (
    TEMPORARY_KEY_PERIOD_EXPONENT,
    WindowBuild,
    period_of,
    temporary_key_block,
    token_block,
)
from edge_agent.core.token_table import TokenTable

TOKEN_BYTES = 8


def temporary_key(identity_key: bytes, time_s: int) -> bytes:
    return encrypt_block(identity_key, temporary_key_block(time_s))


def eid_token(identity_key: bytes, rotation_exponent: int, time_s: int) -> bytes:
    """The 8-byte token a phone advertises at ``time_s`` (32-bit seconds)."""
    time_s &= 0xFFFFFFFF
    block = token_block(rotation_exponent, time_s)
    return encrypt_block(temporary_key(identity_key, time_s), block)[:TOKEN_BYTES]


def token_number(token: bytes) -> int:
    """An 8-byte token as the integer the tables store (native order, as the batch build reads it)."""
    return int.from_bytes(token[:TOKEN_BYTES], sys.byteorder)


class TokenResolver:
    """Token -> customer id for the current window and ``skew`` windows either side.

    Windows are built by ``WindowBuild``s. With ``sliced=False`` (replay, tests, tools: a
    simulated clock that never waits) ``advance`` finishes any missing window at once, as a
    rebuild always did. With ``sliced=True`` (the daemon) ``advance`` never computes: it queues
    what is missing, nearest to now first, and the driver calls ``precompute`` between
    sightings, which also builds the window after the last wanted one ahead of time, so a
    rotation only moves tables from one dict to another. Until a wanted window is complete, its
    partial table answers for the slots it covers.
    """

    def __init__(
        self,
        rotation_exponent: int,
        skew_windows: int,
        registry: Registry | None = None,
        cipher: BlockCipher = REFERENCE,
        *,
        sliced: bool = False,
    ) -> None:
        self._k = rotation_exponent
        # A table is one AES block per customer: the assembly injects the fastest backend.
        self.cipher = cipher
        self._skew = skew_windows
        self.sliced = sliced
        self.registry = registry if registry is not None else Registry()
        self._tables: dict[int, TokenTable] = {}
        # Windows waiting to be built, in order; the front one may be under way.
        self._queue: dict[int, WindowBuild | None] = {}
        # Temporary keys change every 65,536 s, far slower than windows: one buffer per period.
        self._temporary: dict[int, bytearray] = {}
        self._current: int | None = None
        self._wanted: tuple[int, ...] = ()
        self._spare: TokenTable | None = None  # the window a rotation dropped, for the next build
        self.windows_built = 0
        # Wanted windows that a rotation found unbuilt (sliced: not ready ahead of time).
        self.rotations_unready = 0

    def __len__(self) -> int:
        return len(self.registry)

    @property
    def ready_windows(self) -> int:
        """How many of the wanted windows are complete (all of them in steady state)."""
        return sum(1 for w in self._wanted if w in self._tables)

    @property
    def pending(self) -> bool:
        """Whether ``precompute`` has work: a wanted window or the next one ahead is unbuilt."""
        if self._current is None:  # nothing asked for yet: the first call starts the windows
            return len(self.registry) > 0
        return bool(self._queue) or self._ahead() not in self._tables

    @property
    def current_ready(self) -> bool:
        """Whether the window of now is built: until it is, most phones resolve to nobody."""
        if self._current is None:
            return len(self.registry) == 0
        return self._current in self._tables

    def put(self, customer: Customer) -> None:
        """Add or replace a customer; a consenting one resolves at once in every live window."""
        if customer.customer_id in self.registry:
            self.remove(customer.customer_id)
        slot = self.registry.put(customer)
        for period, buffer in self._temporary.items():
            if len(buffer) < (slot + 1) * BLOCK:
                buffer.extend(bytes((slot + 1) * BLOCK - len(buffer)))
            buffer[slot * BLOCK : (slot + 1) * BLOCK] = temporary_key(
                customer.identity_key, period << TEMPORARY_KEY_PERIOD_EXPONENT
            )
        builds = [b for b in self._queue.values() if b is not None and slot < b.cursor]
        for build in builds:
            if build.fills_temporary:  # slots above the cursor get theirs when it gets there
                build.temporary[slot * BLOCK : (slot + 1) * BLOCK] = temporary_key(
                    customer.identity_key, build.period << TEMPORARY_KEY_PERIOD_EXPONENT
                )
        if self.registry.resolvable(slot):
            for window, table in self._tables.items():
                table.add(self._token_number(slot, window), slot)
            for build in builds:
                build.table.add(self._token_number(slot, build.window, build.temporary), slot)

    def load(self, rows: Iterable[CustomerRow]) -> list[str]:
        """Add many customers (a start's registry); returns the ids of those who may not be
        recognised, as ``Registry.extend``. In bulk while nothing is built
        (``_nothing_to_patch``), else a ``put`` per row."""
        if self._nothing_to_patch:
            return self.registry.extend(rows)
        unresolvable = []
        for customer_id, key, service, marketing in rows:
            customer = Customer(customer_id, bytes(key), bool(service), bool(marketing))
            self.put(customer)
            if not customer.resolvable:
                unresolvable.append(customer_id)
        return unresolvable

    def load_pages(self, pages: Iterable[CustomerPage]) -> list[str]:
        """``load`` for pages (``StateStore.customer_pages``)."""
        unresolvable: list[str] = []
        for page in pages:
            if self._nothing_to_patch:
                unresolvable += self.registry.extend_page(page)
            else:
                unresolvable += self.load(page.rows())
        return unresolvable

    @property
    def _nothing_to_patch(self) -> bool:
        """Whether customers may go straight into the registry's buffers: no window built, no
        period's temporary keys, and no build past its first slot (a start, or after ``clear``;
        windows queued at start are fine, as appended slots lie above every cursor). The windows
        are then built from the buffers in slices."""
        return not (self._tables or self._temporary) and all(
            build is None or build.cursor == 0 for build in self._queue.values()
        )

    def take_precomputed(
        self, window: int, first_slot: int, ids: list[str],
        temporary: bytes | bytearray, tokens: bytes | bytearray,
    ) -> bool:  # fmt: skip
        """AES outputs for ``window`` computed elsewhere (the daemon's worker process, while the
        start reads the registry): the temporary keys and token blocks of the customers ``ids``
        from ``first_slot`` on. Taken only if they continue that window's build exactly (the
        window still wanted, its build's cursor at ``first_slot``, those slots holding those
        ids); whether they were taken. What is not taken is built in slices as ever."""
        if window not in self._queue or self.registry.ids[first_slot : first_slot + len(ids)] != ids:
            return False
        build = self._queue[window]
        if build is None:
            build = self._queue[window] = self._start(window)
        if build.cursor != first_slot:
            return False
        if build.take(self.registry, temporary, tokens):
            self._finish(window, build)
        return True

    def remove(self, customer_id: str) -> None:
        slot = self.registry.slot(customer_id)
        if slot is None:
            return
        if self.registry.resolvable(slot):
            for window, table in self._tables.items():
                table.discard(self._token_number(slot, window), slot)
            for build in self._queue.values():
                if build is not None and slot < build.cursor:
                    build.table.discard(self._token_number(slot, build.window, build.temporary), slot)
        self.registry.remove(customer_id)

    def clear(self) -> None:
        self.registry = Registry()
        self._spare = None
        self._tables.clear()
        self._queue.clear()
        self._temporary.clear()
        self._current = None
        self._wanted = ()

    def resolve(self, token: bytes, now: float) -> str | None:
        self.advance(now)
        number = token_number(token)
        for table in self._tables.values():
            slot = table.get(number)
            if slot is not None:
                return self.registry.ids[slot]
        for window, build in self._queue.items():
            if build is not None and window in self._wanted:
                slot = build.table.get(number)
                if slot is not None:
                    return self.registry.ids[slot]
        return None

    def advance(self, now: float) -> None:
        """Make sure the windows around ``now`` exist (or are queued, if sliced) and older ones
        are dropped."""
        current = (int(now) & 0xFFFFFFFF) >> self._k
        if current == self._current:
            return
        if self._current is not None and self._current - self._skew <= current < self._current:
            # A sighting a little older than the last time asked (one queued behind a busy loop,
            # a remote node's): its window is still held. Going back would drop the window ahead
            # and rebuild it at the next look at now, to and fro for as long as the queue lags.
            return
        first = self._current is None
        self._current = current
        # Nearest first: the current window, then one ahead, one behind, two ahead...
        self._wanted = wanted = tuple(
            w for d in range(2 * self._skew + 1) if (w := current + (d + 1) // 2 * (1 if d % 2 else -1)) >= 0
        )
        keep = (*wanted, self._ahead())
        dropped = [t for w, t in self._tables.items() if w not in keep]
        if dropped:
            self._spare = dropped[0]
        self._tables = {w: t for w, t in self._tables.items() if w in keep}
        if not first and self.sliced:
            self.rotations_unready += sum(1 for w in wanted if w not in self._tables)
        queue = self._queue
        self._queue = {w: queue.get(w) for w in keep if w not in self._tables and (w in wanted or w in queue)}
        periods = {period_of(w, self._k) for w in keep}
        self._temporary = {p: b for p, b in self._temporary.items() if p in periods}
        if not self.sliced:
            while any(w in self._queue for w in wanted):
                self.precompute(self.registry.slots + 1)

    def precompute(self, slots: int = TOKEN_SLICE_SLOTS) -> bool:
        """Build the next ``slots`` slots of the front queued window (or start the one ahead);
        returns whether work remains."""
        if self._current is None:
            return False
        if not self._queue:
            ahead = self._ahead()
            if ahead in self._tables:
                return False
            self._queue[ahead] = None
        window, build = next(iter(self._queue.items()))
        if build is None:
            build = self._queue[window] = self._start(window)
        if build.step(self.registry, self.cipher, slots):
            self._finish(window, build)
        return self.pending

    def _finish(self, window: int, build: WindowBuild) -> None:
        del self._queue[window]
        self._tables[window] = build.table
        if build.fills_temporary:
            self._temporary[build.period] = build.temporary
        self.windows_built += 1

    def table_for(self, window: int) -> TokenTable:
        """Every resolvable customer's token of any ``window``, built at once apart from the live
        tables (which it leaves alone): what ``core.tokenclock`` looks far windows up in when the
        box clock is suspect."""
        build = self.start_build(window)
        build.step(self.registry, self.cipher, self.registry.slots + 1)
        return build.table

    def start_build(self, window: int) -> WindowBuild:
        """A build of ``window``'s table apart from the live ones, for the caller to step."""
        return self._start(window)

    @property
    def current_window(self) -> int | None:
        """The window of the time last asked about (``advance``); None before the first."""
        return self._current

    def plaintexts(self, window: int) -> tuple[bytes, bytes]:
        """What ``window``'s build encrypts under each customer: the block their temporary key
        comes from (under the identity key), then the token's (under the temporary key)."""
        time_s = window << self._k
        return temporary_key_block(time_s), token_block(self._k, time_s)

    def _ahead(self) -> int:
        """The window after the last wanted one: built ahead so the next rotation is a swap."""
        assert self._current is not None
        return self._current + self._skew + 1

    def _start(self, window: int) -> WindowBuild:
        period = period_of(window, self._k)
        known = self._temporary.get(period)
        return WindowBuild(
            window, self._k, self._empty_table(),
            known if known is not None else bytearray(), fills_temporary=known is None,
        )  # fmt: skip

    def _empty_table(self) -> TokenTable:
        """A table for the registry: the spare one a rotation dropped if it is the right size."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.capacity == TokenTable.capacity_for(2 * len(self.registry)):
            spare.clear()
            return spare
        return TokenTable(2 * len(self.registry))

    def _token_number(self, slot: int, window: int, temporary: bytearray | None = None) -> int:
        time_s = window << self._k
        if temporary is None:
            temporary = self._temporary[time_s >> TEMPORARY_KEY_PERIOD_EXPONENT]
        key = bytes(temporary[slot * BLOCK : (slot + 1) * BLOCK])
        return token_number(encrypt_block(key, token_block(self._k, time_s)))


class AnonymousHasher:
    """Daily-salted pseudonyms for people we may count but must not recognise tomorrow."""

    # A phone is heard a few times a second for minutes: remember today's answers (in memory
    # only, like the salt) instead of hashing every advertisement. Bounded; cleared daily.
    CACHE_LIMIT = 200_000

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes
        self._day: int | None = None
        self._salt = b""
        self._cache: dict[str | bytes, str] = {}

    def pseudonym(self, local_day: int, material: bytes) -> str:
        if local_day != self._day:
            self._day, self._salt = local_day, self._random_bytes(16)
            self._cache.clear()
        return hashlib.blake2b(material, key=self._salt, digest_size=8).hexdigest()

    def for_address(self, local_day: int, address: str) -> str:
        """Today's pseudonym of a Bluetooth address (case-insensitive)."""
        if local_day == self._day:
            cached = self._cache.get(address)
            if cached is not None:
                return cached
        pseudonym = self.pseudonym(local_day, b"addr:" + address.upper().encode())
        self._remember(address, pseudonym)
        return pseudonym

    def for_token(self, local_day: int, token: bytes) -> str:
        """Today's pseudonym of a token that resolved to nobody (a non-consenting app user)."""
        if local_day == self._day:
            cached = self._cache.get(token)
            if cached is not None:
                return cached
        pseudonym = self.pseudonym(local_day, b"eid:" + token)
        self._remember(token, pseudonym)
        return pseudonym

    def _remember(self, key: str | bytes, pseudonym: str) -> None:
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = pseudonym
