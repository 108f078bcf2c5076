"""The system's clocks, defined once for every layer that may read them.

The core only names the ``Clock`` type; storage is the lowest layer allowed to read the time,
so the system clock lives here and the adapters and the daemon take it from here. Replay and the
demo build a ``Clock`` with a simulated wall time instead (``adapters.clock.simulated_wall``).
"""

from __future__ import annotations

import time

from edge_agent.core.clock import Clock

SYSTEM_CLOCK = Clock(wall=time.time, monotonic=time.monotonic)
