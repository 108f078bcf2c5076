"""The customers HQ sent, as the agent holds them: ids, identity keys and consents. Pure.

Sized for a chain's whole loyalty base on a Raspberry Pi: a million customers cost about 16 bytes
of key and a byte of flags each in flat buffers, indexed by a slot number, instead of the few
hundred bytes a dictionary of Python objects costs per customer. A ``Customer`` is built on
demand for the few callers that need one (the journey rules on a recognised shopper).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

IDENTITY_KEY_BYTES = 16

# A customer as the state store keeps it: id, identity key, consent to service, to marketing.
CustomerRow = tuple[str, bytes, bool | int, bool | int]


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    # repr=False: a customer printed in a log or traceback must not show the key.
    identity_key: bytes = b""
    consent_service: bool = False
    consent_marketing: bool = False

    def __repr__(self) -> str:
        return (
            f"Customer({self.customer_id!r}, service={self.consent_service}, "
            f"marketing={self.consent_marketing})"
        )

    @property
    def resolvable(self) -> bool:
        """Only a customer who agreed to at least one purpose may be recognised at all."""
        return self.consent_service or self.consent_marketing


# Registry flag bits, one byte per slot.
_LIVE, _SERVICE, _MARKETING = 1, 2, 4


@dataclass(frozen=True, slots=True)
class CustomerPage:
    """Many customers as columns, the way a start reads them from SQLite (``StateStore``):
    ``keys`` is 16 bytes per id, ``flags`` one registry flag byte per id (live, consents).

    A page costs a Python object per id and nothing else, where a row costs a tuple of four (a
    million customers' start: 1.0-1.1 s to load from SQLite as pages, 1.6 s as rows).
    """

    ids: list[str]
    keys: bytes
    flags: bytes

    def __post_init__(self) -> None:
        if len(self.keys) != IDENTITY_KEY_BYTES * len(self.ids) or len(self.flags) != len(self.ids):
            raise ValueError(f"a page of {len(self.ids)} customers has {len(self.keys)} key bytes")

    @classmethod
    def of_rows(cls, rows: Iterable[CustomerRow]) -> CustomerPage:
        """A page from rows; a key that is not 16 bytes is named, as ``Registry.put`` names it."""
        ids, keys, flags = [], bytearray(), bytearray()
        for customer_id, key, service, marketing in rows:
            if len(key) != IDENTITY_KEY_BYTES:
                raise ValueError(f"identity key of customer {customer_id!r} is not 16 bytes")
            ids.append(customer_id)
            keys += key
            flags.append(_LIVE | (_SERVICE if service else 0) | (_MARKETING if marketing else 0))
        return cls(ids, bytes(keys), bytes(flags))

    def rows(self) -> Iterator[CustomerRow]:
        for index, customer_id in enumerate(self.ids):
            flag = self.flags[index]
            key = self.keys[index * IDENTITY_KEY_BYTES : (index + 1) * IDENTITY_KEY_BYTES]
            yield customer_id, key, bool(flag & _SERVICE), bool(flag & _MARKETING)


class Registry:
    """Every customer HQ sent, in flat buffers indexed by a slot number.

    Slots of removed customers are reused, so the buffers follow the registry's peak size. The
    identity key stays in ``keys`` only; a ``Customer`` is built on demand for the few callers
    that need one (rules on a recognised shopper).
    """

    def __init__(self) -> None:
        self._slot_of: dict[str, int] = {}
        self.ids: list[str | None] = []
        self.keys = bytearray()
        self.flags = bytearray()
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._slot_of

    def __iter__(self) -> Iterator[str]:
        """Customer ids, as iterating a dict would give."""
        return iter(self._slot_of)

    @property
    def slots(self) -> int:
        return len(self.ids)

    def slot(self, customer_id: str) -> int | None:
        return self._slot_of.get(customer_id)

    def get(self, customer_id: str) -> Customer | None:
        slot = self._slot_of.get(customer_id)
        return None if slot is None else self._customer(customer_id, slot)

    def resolvable(self, slot: int) -> bool:
        flags = self.flags[slot]
        return bool(flags & _LIVE) and bool(flags & (_SERVICE | _MARKETING))

    def key(self, slot: int) -> bytes:
        return bytes(self.keys[slot * IDENTITY_KEY_BYTES : (slot + 1) * IDENTITY_KEY_BYTES])

    def put(self, customer: Customer) -> int:
        if len(customer.identity_key) != IDENTITY_KEY_BYTES:
            raise ValueError(f"identity key of customer {customer.customer_id!r} is not 16 bytes")
        slot = self._slot_of.get(customer.customer_id)
        if slot is None:
            if self._free:
                slot = self._free.pop()
                self.ids[slot] = customer.customer_id
            else:
                slot = len(self.ids)
                self.ids.append(customer.customer_id)
                self.keys.extend(bytes(IDENTITY_KEY_BYTES))
                self.flags.append(0)
            self._slot_of[customer.customer_id] = slot
        self.keys[slot * IDENTITY_KEY_BYTES : (slot + 1) * IDENTITY_KEY_BYTES] = customer.identity_key
        service = _SERVICE if customer.consent_service else 0
        self.flags[slot] = _LIVE | service | (_MARKETING if customer.consent_marketing else 0)
        return slot

    def extend(self, rows: Iterable[CustomerRow]) -> list[str]:
        """Append many customers at once (a start's load); returns the ids of those who may not be
        recognised (no consent), whose leftovers the caller drops as ``put`` callers do.

        What ``put`` does per customer, without building a ``Customer`` or looking for a free
        slot: with the rows read as ``StateStore.customer_rows`` reads them, a million customers'
        start (``Pipeline`` constructed) takes 1.7-1.9 s here instead of 5.3 s.
        """
        slot_of, ids, keys, flags = self._slot_of, self.ids, self.keys, self.flags
        unresolvable: list[str] = []
        for customer_id, key, service, marketing in rows:
            if self._free or customer_id in slot_of or len(key) != IDENTITY_KEY_BYTES:
                # A reused slot, a repeated id, or a bad key (``put`` raises, naming the customer).
                self.put(Customer(customer_id, bytes(key), bool(service), bool(marketing)))
            else:
                slot_of[customer_id] = len(ids)
                ids.append(customer_id)
                keys += key
                flags.append(_LIVE | (_SERVICE if service else 0) | (_MARKETING if marketing else 0))
            if not (service or marketing):
                unresolvable.append(customer_id)
        return unresolvable

    def extend_page(self, page: CustomerPage) -> list[str]:
        """``extend`` for a page: appended in C-level bulk operations when no slot is free to
        reuse and no id is known yet (a start), else row by row as ``extend`` does."""
        slot_of, first = self._slot_of, len(self.ids)
        if self._free or not slot_of.keys().isdisjoint(page.ids):
            return self.extend(page.rows())
        slot_of.update(zip(page.ids, range(first, first + len(page.ids)), strict=True))
        if len(slot_of) != first + len(page.ids):  # an id twice within the page: the later wins
            for customer_id in page.ids:
                slot_of.pop(customer_id, None)
            return self.extend(page.rows())
        self.ids.extend(page.ids)
        self.keys += page.keys
        self.flags += page.flags
        flags, unresolvable, index = page.flags, [], page.flags.find(_LIVE)
        while index >= 0:  # only the live flag: no consent (a few per hundred at most)
            unresolvable.append(page.ids[index])
            index = flags.find(_LIVE, index + 1)
        return unresolvable

    def remove(self, customer_id: str) -> int | None:
        slot = self._slot_of.pop(customer_id, None)
        if slot is None:
            return None
        self.ids[slot] = None
        self.flags[slot] = 0
        self.keys[slot * IDENTITY_KEY_BYTES : (slot + 1) * IDENTITY_KEY_BYTES] = bytes(IDENTITY_KEY_BYTES)
        self._free.append(slot)
        return slot

    def _customer(self, customer_id: str, slot: int) -> Customer:
        flags = self.flags[slot]
        return Customer(customer_id, self.key(slot), bool(flags & _SERVICE), bool(flags & _MARKETING))
