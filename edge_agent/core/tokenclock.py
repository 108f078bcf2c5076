"""Which rotation window customers' tokens are in: the phones' evidence on the box clock. Pure.

A phone computes its token from its own clock, which the phone's network keeps right; the box
resolves it against its tables for the windows around *its* time. A resolved token's window,
heard at box time ``t``, bounds the box error (``core.wallclock.TokenEvidence``). When the box
is wrong by more than the skew windows, no token resolves at all: then an unresolved token is
looked up in the windows beyond (``search_windows`` either side), in tables built apart from
the live ones, at most one per tick. A token found there is evidence only: the shopper stays
anonymous until the judge has corrected the clock, and then resolves in the ordinary way.

Looking far costs one AES block per customer per window (about as long as a rotation's rebuild,
seconds at a million customers) and a table as large as a live one (25 MB at a million), so it is
bounded three ways:

- it starts only while the caller says the clock is suspect (not NTP-synchronised), the window
  of now is built, and ``SUSPECT_RUN`` *different* tokens have gone unresolved with none
  resolving: on a right clock customers resolve among the app users who have not consented (one
  such phone heard a hundred times is one token, not a hundred);
- it stops, its tables dropped, as soon as a token resolves in a live window: the live windows
  work, so the box is right to within the skew windows, and the phones' evidence comes from
  there. A search stopped that way is not started again for ``SEARCH_HOLD_S``: a few
  non-consenting phones in a row on a right clock cost one search an hour at most;
- while it runs, a rotation builds only the two far windows that came into range, one either
  side (the others are kept), never all ``2 * search_windows`` again.

Where the live windows are built in slices (the daemon), so are the far ones, after them
(``precompute``): a suspect clock must not bring back the stall the slices took away. Measured
before these bounds, on an unsynchronised box at a million customers: every rotation rebuilt
eight far windows, which outran the accelerated week benchmark's rotations and starved the live
ones (``rotations_unready`` in the tens of thousands a day, arrivals undelivered).
"""

from __future__ import annotations

from edge_agent.core.identity import TokenResolver, eid_token, token_number
from edge_agent.core.token_build import WindowBuild
from edge_agent.core.token_table import TokenTable
from edge_agent.core.wallclock import TokenEvidence

# A token is remembered per customer to tell when their phone moved to a new window; bounded
# like the evidence itself (a few hundred customers agree or not long before this fills).
MAX_REMEMBERED_TOKENS = 4096
# Different unresolved tokens, none resolving in between, before far windows are built. A token
# lasts a rotation window (17 min at K=10), so a small store hears only a few an hour: three,
# with no customer among them, is enough to look, and the hold below bounds what a false start
# (three non-consenting app users in a row) costs on a right clock.
SUSPECT_RUN = 3
# After a search ended because a token resolved in a live window, none starts for this long.
SEARCH_HOLD_S = 3600.0


class TokenClock:
    def __init__(self, rotation_exponent: int, skew_windows: int, search_windows: int) -> None:
        self._k = rotation_exponent
        self._skew = skew_windows
        self._search = search_windows
        self.evidence = TokenEvidence(rotation_exponent)
        self.searching = False  # the caller's: True while the clock is suspect
        self._last: dict[str, tuple[bytes, int]] = {}  # customer -> (token, its window)
        self._far: dict[int, TokenTable] = {}
        self._far_registry: object = None  # the registry the far tables' slots belong to
        self._building: WindowBuild | None = None  # the far table being built a slice at a time
        self._unresolved: set[bytes] = set()  # different tokens no live window knew, none since
        self._stopped_at: float | None = None  # when a search last ended by a live resolution
        self.far_windows_built = 0

    def _window(self, now: float) -> int:
        return (int(now) & 0xFFFFFFFF) >> self._k

    def resolved(self, resolver: TokenResolver, customer_id: str, token: bytes, now: float) -> None:
        """A token resolved: note which window it is in (computed again only when it changes).
        The live windows work, so any far search stops."""
        self._unresolved.clear()
        if self._far or self._building is not None:
            self._drop_far()
            self._stopped_at = now
        last = self._last.get(customer_id)
        if last is not None and last[0] == token:
            self.evidence.heard(customer_id, last[1], now)
            return
        customer = resolver.registry.get(customer_id)
        if customer is None:
            return
        current = self._window(now)
        for window in range(current - self._skew, current + self._skew + 1):
            if window >= 0 and eid_token(customer.identity_key, self._k, window << self._k) == token:
                if len(self._last) >= MAX_REMEMBERED_TOKENS:
                    del self._last[next(iter(self._last))]
                self._last[customer_id] = (token, window)
                self.evidence.heard(customer_id, window, now)
                return

    def unresolved(self, resolver: TokenResolver, token: bytes, now: float) -> None:
        """A token no live window knows: while searching, look for it in the far windows."""
        if not self.searching or not resolver.current_ready:  # no table yet says nothing of the clock
            return
        if len(self._unresolved) < SUSPECT_RUN:
            self._unresolved.add(token)
        if not self._far:
            return
        number = token_number(token)
        for window, table in self._far.items():
            slot = table.get(number)
            if slot is not None:
                customer_id = resolver.registry.ids[slot]
                if customer_id is not None:
                    self.evidence.heard(customer_id, window, now)
                return

    def prepare(self, resolver: TokenResolver, now: float) -> None:
        """On the tick: build at most one missing far table for the windows around ``now``."""
        if not self.searching or self._search <= 0:
            self._unresolved.clear()
            if self._far or self._building is not None:
                self._drop_far()
            return
        if not self._far and self._building is None:
            # abs(): a clock step either way may end the hold early, never make it last for days.
            held = self._stopped_at is not None and abs(now - self._stopped_at) < SEARCH_HOLD_S
            if len(self._unresolved) < SUSPECT_RUN or held:
                return
        if resolver.registry is not self._far_registry:  # replaced whole: the slots are others'
            self._drop_far()
            self._far_registry = resolver.registry
        current = self._window(now)
        wanted = [
            current + sign * distance
            for distance in range(self._skew + 1, self._skew + self._search + 1)
            for sign in (-1, 1)
            if current + sign * distance >= 0
        ]
        # A rotation keeps the far tables still in range: one new window to build, not all.
        self._far = {w: t for w, t in self._far.items() if w in wanted}
        if self._building is not None and self._building.window not in wanted:
            self._building = None
        for window in wanted:
            if window not in self._far:
                if not resolver.sliced:
                    self._far[window] = resolver.table_for(window)
                    self.far_windows_built += 1
                elif self._building is None:
                    self._building = resolver.start_build(window)
                return

    @property
    def pending(self) -> bool:
        """Whether a far table is being built (``precompute`` has work)."""
        return self._building is not None

    def precompute(self, resolver: TokenResolver, slots: int) -> bool:
        """The next ``slots`` slots of the far table being built; whether work remains."""
        build = self._building
        if build is None:
            return False
        if build.step(resolver.registry, resolver.cipher, slots):
            self._far[build.window] = build.table
            self._building = None
            self.far_windows_built += 1
        return self._building is not None

    @property
    def far_windows(self) -> int:
        """Far tables held now (0 unless the clock is suspect and nothing resolves)."""
        return len(self._far)

    def _drop_far(self) -> None:
        self._far, self._building = {}, None

    def forget_evidence(self) -> None:
        """The clock was corrected: the remembered windows were against the old time."""
        self._last.clear()
        self.evidence.clear()
