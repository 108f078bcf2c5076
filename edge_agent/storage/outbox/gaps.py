"""Gap records: which messages this store dropped, as runs HQ can tell from a loss.

One record per reason, boot, stream and contiguous run of sequence numbers; records waiting in
memory for room on a full disk merge with the one before when they continue its run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from edge_agent.core.events import Envelope, GapMessage

GapReason = Literal["expired", "evicted", "dead_letter", "refused"]


@dataclass(frozen=True, slots=True)
class GapRun:
    """Messages of one boot and stream, dropped for one reason: ``first_seq``..``last_seq``
    (None when the dropped rows carried no number)."""

    reason: GapReason
    boot_id: str | None
    stream: str
    first_seq: int | None
    last_seq: int | None
    count: int

    @classmethod
    def runs(cls, reason: GapReason, dropped: Iterable[tuple[str | None, str, int | None]]) -> list[GapRun]:
        """One run per (boot, stream) and contiguous run of sequence numbers among ``dropped``
        ((boot_id, stream, seq) of each message), in the order the streams first appear."""
        numbers_of: dict[tuple[str | None, str], list[int | None]] = {}
        for boot, stream, seq in dropped:
            numbers_of.setdefault((boot, stream), []).append(seq)
        gaps: list[GapRun] = []
        for (boot, stream), numbers in numbers_of.items():
            known = sorted(n for n in numbers if n is not None)
            if not known:
                gaps.append(cls(reason, boot, stream, None, None, len(numbers)))
                continue
            start = previous = known[0]
            for number in [*known[1:], None]:
                if number is not None and number == previous + 1:
                    previous = number
                    continue
                gaps.append(cls(reason, boot, stream, start, previous, previous - start + 1))
                if number is not None:
                    start = previous = number
        return gaps

    def hold(self, held: list[GapRun]) -> None:
        """Keep this record in ``held`` for later, merged with the previous one when it continues
        its run (a disk full for an hour refuses thousands of events: a handful of records, not
        thousands)."""
        for index in range(len(held) - 1, -1, -1):
            earlier = held[index]
            if (earlier.reason, earlier.boot_id, earlier.stream) != (self.reason, self.boot_id, self.stream):
                continue
            continues = earlier.last_seq is not None and self.first_seq == earlier.last_seq + 1
            if self.first_seq is not None and continues:
                count = earlier.count + self.count
                merged = dataclasses.replace(earlier, last_seq=self.last_seq, count=count)
                held[index] = merged
                return
            break  # the latest run of this stream does not continue: a new record
        held.append(self)

    def message(self, envelope: Envelope) -> GapMessage:
        """The ``gap.v1`` record HQ receives."""
        return GapMessage(
            **envelope, reason=self.reason,
            dropped_boot_id=self.boot_id, dropped_stream=self.stream, first_seq=self.first_seq,
            last_seq=self.last_seq, count=self.count,
        )  # fmt: skip
