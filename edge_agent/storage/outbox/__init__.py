"""The durable outbox: every message is a row in SQLite before anything tries to send it.

paho's own queue is memory only, so it never becomes the buffer: the sender takes due rows by
priority then sequence, and a row is deleted only after the broker's PUBACK reported success.
A crash anywhere therefore means a resend (HQ deduplicates on ``event_id``), never a loss.

Bounded: past ``storage.outbox_max_bytes`` expired rows go first, then telemetry oldest first;
notifications and transactional events are never evicted, and at the cap new ones are refused
loudly (ERROR log, ``alarm`` in the status). Rows the broker keeps refusing move to a dead-letter
table. Every message dropped for any of these reasons is reported to HQ as a ``gap.v1`` record
naming its boot, stream and sequence numbers, so HQ can tell a known gap from a loss.

On a full filesystem (storage's full-disk routine) the outbox is the space maker: it drops
expired rows and evicts telemetry by the same policy. If a write still finds no room, the
caller refuses the messages (``refuse``) and their gap records wait in memory for room.

The outbox owns every statement on its tables (``outbox``, ``dead_letter``); read-only figures
for readers beside the daemon are ``queue_figures``.
"""

from edge_agent.storage.outbox.durable import Outbox
from edge_agent.storage.outbox.gaps import GapRun
from edge_agent.storage.outbox.sending import OutboxRow
from edge_agent.storage.outbox.tables import queue_figures

__all__ = ["GapRun", "Outbox", "OutboxRow", "queue_figures"]
