"""One rotation window's token table, built a slice of registry slots at a time. Pure.

Building a window for a million customers is a million AES blocks (two million when the
temporary-key period changes) plus a million table inserts: about two to three seconds on the
store box, during which the main loop would hear no sighting. A ``WindowBuild`` does the same
work resumably: each ``step`` covers the next ``slots`` registry slots and returns, so whoever
drives it (the daemon's main loop, between sightings) decides how long any one pause may be.

Slots are processed in order, so at any moment the table answers exactly for the slots below
``cursor``; a registry change below the cursor is patched into the table by the resolver, one
above it is picked up when the cursor gets there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.core.cipher import BLOCK, BlockCipher

if TYPE_CHECKING:  # only for annotations: identity imports this module
    from edge_agent.core.registry import Registry
    from edge_agent.core.token_table import TokenTable

TEMPORARY_KEY_PERIOD_EXPONENT = 16  # temporary keys change every 65,536 s


def temporary_key_block(time_s: int) -> bytes:
    return b"\x00" * 11 + b"\xff" + b"\x00\x00" + ((time_s >> 16) & 0xFFFF).to_bytes(2, "big")


def token_block(rotation_exponent: int, time_s: int) -> bytes:
    cleared = (time_s >> rotation_exponent) << rotation_exponent
    return b"\x00" * 11 + bytes([rotation_exponent]) + cleared.to_bytes(4, "big")


def period_of(window: int, rotation_exponent: int) -> int:
    """The temporary-key period a window falls in."""
    return (window << rotation_exponent) >> TEMPORARY_KEY_PERIOD_EXPONENT


@dataclass(slots=True)
class WindowBuild:
    """The resumable state of one window's build (mutable on purpose: it is the cursor).

    ``temporary`` is the period's temporary keys, 16 bytes per slot. When no complete buffer for
    the period exists yet (``fills_temporary``), the build computes them slice by slice too and
    the resolver keeps the buffer once the build is done.
    """

    window: int
    rotation_exponent: int
    table: TokenTable
    temporary: bytearray
    fills_temporary: bool
    cursor: int = 0

    def step(self, registry: Registry, cipher: BlockCipher, slots: int) -> bool:
        """Cover the next ``slots`` slots; True once every slot of the registry is covered."""
        start = self.cursor
        end = min(registry.slots, start + max(1, slots))
        if end > start:
            time_s = self.window << self.rotation_exponent
            if self.fills_temporary:
                keys = registry.keys[start * BLOCK : end * BLOCK]
                self.temporary[start * BLOCK : end * BLOCK] = cipher.encrypt_many(
                    keys, temporary_key_block(time_s)
                )
            tokens = cipher.encrypt_many(
                self.temporary[start * BLOCK : end * BLOCK], token_block(self.rotation_exponent, time_s)
            )
            self.table.add_batch(tokens, registry, start)
            self.cursor = end
        return self.cursor >= registry.slots

    def take(self, registry: Registry, temporary: bytes | bytearray, tokens: bytes | bytearray) -> bool:
        """``step`` with the AES already done elsewhere: the temporary keys and token blocks of
        the slots from the cursor on (16 bytes each; ``temporary`` is ignored where the period's
        keys are known). True once every slot of the registry is covered."""
        start = self.cursor
        end = start + len(tokens) // BLOCK
        if end > registry.slots or (self.fills_temporary and len(temporary) != len(tokens)):
            raise ValueError(
                f"AES outputs for slots {start}..{end} do not fit a registry of {registry.slots}"
            )
        if self.fills_temporary:
            self.temporary[start * BLOCK : end * BLOCK] = temporary
        self.table.add_batch(tokens, registry, start)
        self.cursor = end
        return self.cursor >= registry.slots

    @property
    def period(self) -> int:
        return period_of(self.window, self.rotation_exponent)
