"""edge-agent: turns in-store BLE radio traffic into customer journeys for headquarters.

The package is a pure core (``frames``, ``identity``, ``presence``, ``journey``, ``events``,
``core``) wrapped by thin adapters (``outbox``, ``state``, ``link``, ``service``, ``replay``,
``cli``). The core never touches sockets, files or the wall clock: time is an argument.
"""

__version__ = "0.1.0"
