"""Which rotation window customers' tokens are in: the phones' evidence on the box clock. Pure.

A phone computes its token from its own clock, which the phone's network keeps right; the box
resolves it against its tables for the windows around *its* time. A resolved token's window,
heard at box time ``t``, bounds the box error (``core.wallclock.TokenEvidence``). When the box
is wrong by more than the skew windows, no token resolves at all: then an unresolved token is
looked up in the windows beyond (``search_windows`` either side), in tables built apart from
the live ones, at most one per tick. A token found there is evidence only: the shopper stays
anonymous until the judge has corrected the clock, and then resolves in the ordinary way.

Looking far costs one AES block per customer per window (about as long as a rotation's rebuild,
seconds at a million customers), so it runs only while the caller says the clock is suspect (not
NTP-synchronised) and a run of ``SUSPECT_RUN`` tokens has gone unresolved with none resolving:
on a right clock customers resolve among the app users who have not consented, and no far table
is built. Where the live windows are built in slices (the daemon), so are the far ones, after
them (``precompute``): a suspect clock must not bring back the stall the slices took away.
"""

from __future__ import annotations

from edge_agent.core.identity import TokenResolver, TokenTable, eid_token, token_number
from edge_agent.core.token_build import WindowBuild
from edge_agent.core.wallclock import TokenEvidence

# A token is remembered per customer to tell when their phone moved to a new window; bounded
# like the evidence itself (a few hundred customers agree or not long before this fills).
MAX_REMEMBERED_TOKENS = 4096
# Unresolved tokens in a row, none resolving, before far windows are built: tokens of
# non-consenting app users never resolve, so a few mean nothing; dozens with no customer among
# them, in a store whose customers do come, say the windows are wrong.
SUSPECT_RUN = 50


class TokenClock:
    def __init__(self, rotation_exponent: int, skew_windows: int, search_windows: int) -> None:
        self._k = rotation_exponent
        self._skew = skew_windows
        self._search = search_windows
        self.evidence = TokenEvidence(rotation_exponent)
        self.searching = False  # the caller's: True while the clock is suspect
        self._last: dict[str, tuple[bytes, int]] = {}  # customer -> (token, its window)
        self._far: dict[int, TokenTable] = {}
        self._far_for: tuple[int, int] | None = None  # (box window, registry size) the tables fit
        self._building: WindowBuild | None = None  # the far table being built a slice at a time
        self._unresolved_run = 0  # tokens in a row that no live window knew

    def _window(self, now: float) -> int:
        return (int(now) & 0xFFFFFFFF) >> self._k

    def resolved(self, resolver: TokenResolver, customer_id: str, token: bytes, now: float) -> None:
        """A token resolved: note which window it is in (computed again only when it changes)."""
        self._unresolved_run = 0
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
        if not self.searching:
            return
        self._unresolved_run += 1
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
            if self._far or self._building is not None:
                self._far, self._far_for, self._building = {}, None, None
            return
        if self._unresolved_run < SUSPECT_RUN and not self._far:
            return
        current = self._window(now)
        key = (current, len(resolver.registry))
        if key != self._far_for:
            self._far_for = key
            self._far, self._building = {}, None
        wanted = [
            current + sign * distance
            for distance in range(self._skew + 1, self._skew + self._search + 1)
            for sign in (-1, 1)
            if current + sign * distance >= 0
        ]
        for window in wanted:
            if window not in self._far:
                if not resolver.sliced:
                    self._far[window] = resolver.table_for(window)
                elif self._building is None or self._building.window != window:
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
        return self._building is not None

    def forget_evidence(self) -> None:
        """The clock was corrected: the remembered windows were against the old time."""
        self._last.clear()
        self.evidence.clear()
