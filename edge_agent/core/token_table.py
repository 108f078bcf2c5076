"""Token number -> registry slot for one rotation window, in flat arrays. Pure."""

from __future__ import annotations

from array import array

from edge_agent.core.registry import _LIVE, _MARKETING, _SERVICE, Registry

_EMPTY, _DELETED = -1, -2
_EMPTY_CHUNK = array("i", [_EMPTY]) * 65_536  # what ``TokenTable.clear`` copies, 256 KB at a time


class TokenTable:
    """Token number -> slot for one window: open addressing over two flat arrays.

    A capacity of at least twice the entries keeps probe sequences short (expected ~1.5 reads
    for a hit, ~2.5 for a miss); a Python dict of the same mapping costs about five times the
    memory, which at a million customers and three windows is the whole RSS budget.
    """

    __slots__ = ("_live", "_mask", "_slots", "_tokens", "_used")

    def __init__(self, capacity: int = 1024) -> None:
        capacity = self.capacity_for(capacity)
        self._tokens = array("Q", bytes(8 * capacity))
        self._slots = array("i", [_EMPTY]) * capacity
        self._mask = capacity - 1
        self._used = 0  # live entries plus tombstones: what lengthens probes
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def capacity(self) -> int:
        return len(self._slots)

    @staticmethod
    def capacity_for(entries: int) -> int:
        """The capacity a table for ``entries`` gets (a power of two, at least twice as large)."""
        return max(1024, 1 << (max(1, entries) - 1).bit_length())

    def clear(self) -> None:
        """Empty, keeping the arrays: a rotation reuses the window it dropped for the one it
        builds, instead of 24 MB of fresh memory at a million customers (15 ms of allocation,
        zeroing and page faults in one slice). Only the slots need resetting: a token is read
        only where its slot is live."""
        slots, chunk = self._slots, _EMPTY_CHUNK
        for start in range(0, len(slots), len(chunk)):
            slots[start : start + len(chunk)] = chunk[: len(slots) - start]
        self._used = self._live = 0

    @classmethod
    def build(cls, tokens: bytes | bytearray, registry: Registry) -> TokenTable:
        """A table from a batch of AES outputs, 16 bytes per registry slot (token = first 8)."""
        table = cls(2 * len(registry))
        table.add_batch(tokens, registry, 0)
        return table

    def add_batch(self, tokens: bytes | bytearray, registry: Registry, first_slot: int) -> None:
        """Add the resolvable slots among ``first_slot``.. from AES outputs, 16 bytes per slot.

        The one hot loop of a window build, inlined (a method call per slot costs a third more).
        """
        numbers = memoryview(tokens).cast("Q")[::2]
        count = len(numbers)
        if 2 * (self._used + count) > len(self._slots):
            self._rehash(2 * (self._live + count))
        table_tokens, table_slots, mask = self._tokens, self._slots, self._mask
        flags = registry.flags[first_slot : first_slot + count]
        fresh = added = 0
        for slot, (number, flag) in enumerate(zip(numbers, flags, strict=True), first_slot):
            if flag & _LIVE and flag & (_SERVICE | _MARKETING):
                index = number & mask
                while table_slots[index] >= 0:
                    index = (index + 1) & mask
                if table_slots[index] == _EMPTY:
                    fresh += 1
                table_tokens[index] = number
                table_slots[index] = slot
                added += 1
        self._used += fresh
        self._live += added

    def get(self, number: int) -> int | None:
        tokens, slots, mask = self._tokens, self._slots, self._mask
        index = number & mask
        while True:
            slot = slots[index]
            if slot == _EMPTY:
                return None
            if slot >= 0 and tokens[index] == number:
                return slot
            index = (index + 1) & mask

    def add(self, number: int, slot: int) -> None:
        if 2 * (self._used + 1) > len(self._slots):
            self._rehash()
        tokens, slots, mask = self._tokens, self._slots, self._mask
        index = number & mask
        while slots[index] >= 0:
            index = (index + 1) & mask
        if slots[index] == _EMPTY:
            self._used += 1
        tokens[index] = number
        slots[index] = slot
        self._live += 1

    def discard(self, number: int, slot: int) -> None:
        tokens, slots, mask = self._tokens, self._slots, self._mask
        index = number & mask
        while slots[index] != _EMPTY:
            if slots[index] == slot and tokens[index] == number:
                slots[index] = _DELETED
                self._live -= 1
                return
            index = (index + 1) & mask

    def _rehash(self, capacity: int = 0) -> None:
        entries = [(t, s) for t, s in zip(self._tokens, self._slots, strict=True) if s >= 0]
        fresh = TokenTable(capacity or 4 * max(len(entries), 256))
        for number, slot in entries:
            fresh.add(number, slot)
        self._tokens, self._slots, self._mask = fresh._tokens, fresh._slots, fresh._mask
        self._used = self._live = fresh._live
