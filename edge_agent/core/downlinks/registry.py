"""Every downlink kind, declared once: its topic level, its model, how it is kept, who applies it.

The topic kinds, the parser's model lookup, what the state store logs, replays and compacts,
and the HQ contract are all read from ``DOWNLINKS``. Adding a kind is its model (``models``),
one entry below and its handler in the part that applies it (docs/contributing.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import get_args

from edge_agent.core.downlinks.models import (
    CommandsDownlink,
    CustomersDownlink,
    Downlink,
    ListsDownlink,
    OffersDownlink,
    OrdersDownlink,
    PlanogramDownlink,
    ReceiptsDownlink,
)


class Persistence(Enum):
    """How a kind outlives a restart."""

    TABLE = "table"  # its own tables in the state store, read back at start
    LOG = "log"  # downlink_log, as applied, replayed into the rules at start in the same order
    NONE = "none"  # acted on when it arrives, never kept


class AppliedBy(Enum):
    """The part of the agent that applies a kind (and holds the handler for it)."""

    REGISTRY = "registry"  # the customer registry, in StoreCore (core/store.py)
    JOURNEY = "journey"  # the journey rules (core/journey/rules.py)
    ERASURE = "erasure"  # the erasure command, across memory and file (daemon/pipeline.py)


@dataclass(frozen=True, slots=True)
class DownlinkKind:
    """One kind of downlink, published on ``.../in/<kind>``."""

    kind: str
    model: type[Downlink]
    persistence: Persistence
    applied_by: AppliedBy
    # LOG only: a compaction snapshot of what the rules hold replaces the logged ones. A logged
    # kind without one is forgotten once older than the journey horizon (storage.journey_days).
    snapshot: bool = False
    # LOG only: its records name customers, so erasing a customer deletes the logged rows that
    # name them (lists, receipts); the others (planogram, offers) name none.
    names_customers: bool = False
    schema: str = field(init=False)  # the ``schema`` its messages carry, e.g. ``lists.v1``

    def __post_init__(self) -> None:
        if not self.kind or any(c in self.kind for c in "/+#"):
            raise ValueError(f"downlink kind {self.kind!r} is not one topic level")
        if self.snapshot and self.persistence is not Persistence.LOG:
            raise ValueError(f"downlink kind {self.kind!r}: only a logged kind has a snapshot")
        schema_field = self.model.model_fields.get("schema_name")
        names = get_args(schema_field.annotation) if schema_field is not None else ()
        if len(names) != 1 or not isinstance(names[0], str):
            raise ValueError(f"{self.model.__name__} has no schema_name Literal of one name")
        object.__setattr__(self, "schema", names[0])  # frozen: set once, derived from the model


@dataclass(frozen=True, slots=True)
class DownlinkRegistry:
    """The kinds this agent accepts, in the order they are documented, looked up every way."""

    declarations: tuple[DownlinkKind, ...]
    _by_kind: dict[str, DownlinkKind] = field(init=False, repr=False, compare=False)
    _by_model: dict[type[Downlink], DownlinkKind] = field(init=False, repr=False, compare=False)
    _by_schema: dict[str, DownlinkKind] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, key in (("kind", "kind"), ("model", "model"), ("schema", "schema")):
            index = {getattr(d, key): d for d in self.declarations}
            if len(index) != len(self.declarations):
                raise ValueError(f"two downlink kinds share a {name}")
            object.__setattr__(self, f"_by_{key}", index)

    def __iter__(self) -> Iterator[DownlinkKind]:
        return iter(self.declarations)

    def __len__(self) -> int:
        return len(self.declarations)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(d.kind for d in self.declarations)

    def get(self, kind: str) -> DownlinkKind | None:
        return self._by_kind.get(kind)

    def of(self, downlink: Downlink) -> DownlinkKind:
        """The declaration of a parsed downlink."""
        declaration = self._by_model.get(type(downlink))
        if declaration is None:
            raise LookupError(f"{type(downlink).__name__} is not a declared downlink kind")
        return declaration

    def by_schema(self, schema: str) -> DownlinkKind | None:
        return self._by_schema.get(schema)

    def kept(self, persistence: Persistence) -> tuple[DownlinkKind, ...]:
        return tuple(d for d in self.declarations if d.persistence is persistence)

    def extended(self, extra: Iterable[DownlinkKind]) -> DownlinkRegistry:
        return DownlinkRegistry((*self.declarations, *extra))


DOWNLINKS = DownlinkRegistry(
    (
        DownlinkKind("customers", CustomersDownlink, Persistence.TABLE, AppliedBy.REGISTRY),
        DownlinkKind("orders", OrdersDownlink, Persistence.TABLE, AppliedBy.JOURNEY),
        DownlinkKind(
            "lists", ListsDownlink, Persistence.LOG, AppliedBy.JOURNEY, snapshot=True, names_customers=True
        ),
        DownlinkKind("planogram", PlanogramDownlink, Persistence.LOG, AppliedBy.JOURNEY, snapshot=True),
        DownlinkKind("receipts", ReceiptsDownlink, Persistence.LOG, AppliedBy.JOURNEY, names_customers=True),
        DownlinkKind("offers", OffersDownlink, Persistence.LOG, AppliedBy.JOURNEY, snapshot=True),
        DownlinkKind("commands", CommandsDownlink, Persistence.NONE, AppliedBy.ERASURE),
    )
)
