"""What of the journey rules' state in flight changed since the store last kept it. Pure.

Coupons issued and not yet redeemed or expired, outcomes not yet decided, arrivals of orders not
yet collected and check-in messages held for the minimum gap are promises the agent made to HQ
(an ``outcome.v1``, a ``redemption.v1``, an ``order.v1``): a restart must keep them. The rules
note each change here as it happens; the pipeline drains the notes into the state store in the
transaction that enqueues the messages the change caused, so a message and the state behind it
are kept together or not at all. Notes are keyed, so a code issued and redeemed between two
commits costs no write at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The kinds of state kept, as the state store's rows name them.
COUPON = "coupon"
OUTCOME = "outcome"
ARRIVAL = "arrival"
HELD = "held"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One row of the rules' kept state: written (``record``) or deleted (``record`` None)."""

    kind: str
    key: str
    customer_id: str
    record: dict[str, Any] | None


class Journal:
    def __init__(self) -> None:
        self._changes: dict[tuple[str, str], StateChange] = {}

    def __len__(self) -> int:
        return len(self._changes)

    def put(self, kind: str, key: str, customer_id: str, record: dict[str, Any]) -> None:
        self._changes[(kind, key)] = StateChange(kind, key, customer_id, record)

    def drop(self, kind: str, key: str, customer_id: str) -> None:
        self._changes[(kind, key)] = StateChange(kind, key, customer_id, None)

    def drain(self) -> list[StateChange]:
        """The changes since the last drain, each key's latest only; the journal starts afresh."""
        changes, self._changes = list(self._changes.values()), {}
        return changes

    def undo(self, changes: Iterable[StateChange]) -> None:
        """Drained changes that were not committed (a full disk) are due again, unless a newer
        change of the same key came since."""
        for change in changes:
            self._changes.setdefault((change.kind, change.key), change)
