"""The start's registry load with the window of now encrypted beside it (``adapters.aes_worker``).

Each page read from SQLite goes into the registry and its identity keys to the worker; once the
registry is in, the worker's outputs are taken into the current window's build in order. At a
million customers the window is usable when the main loop starts instead of ~2 s of slices
later. Whatever the worker does not deliver, or delivers for slots that turned out otherwise
(a page read row by row, an id repeated), the main loop's slices build, as without it.
"""

from __future__ import annotations

from collections.abc import Iterator

from edge_agent.adapters.aes_worker import AesWorker
from edge_agent.core.registry import CustomerPage
from edge_agent.core.store import StoreCore
from edge_agent.storage.state import StateStore


def load_registry_ahead(core: StoreCore, state: StateStore, now: float, worker: AesWorker) -> int:
    """Load the stored registry into ``core`` and the window of ``now`` from the worker's AES;
    returns how many customers' tokens came from the worker."""
    resolver = core.token_resolver
    resolver.advance(now)  # queues the windows of now; nothing is built yet
    window = resolver.current_window
    assert window is not None
    blocks = resolver.plaintexts(window)
    sent: list[tuple[int, list[str]]] = []

    def pages() -> Iterator[CustomerPage]:
        for page in state.customer_pages():
            first = resolver.registry.slots  # where an appended page's first customer lands
            yield page
            if worker.submit(page.keys, blocks):
                sent.append((first, page.ids))

    try:
        core.load_registry(pages())
        taken = 0
        for first, ids in sent:
            outputs = worker.result()
            if outputs is None or not resolver.take_precomputed(window, first, ids, *outputs):
                break
            taken += len(ids)
        return taken
    finally:
        worker.close()
