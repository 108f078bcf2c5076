"""The pure core: what the agent knows and decides, with no I/O and time as an argument.

Decoding (``frames``, ``receiver_formats``, ``trace``), identity (``identity``, ``cipher``),
presence (``presence``, ``rssi``, ``layout``), beacon health (``beacons``), the journey rules and
their guards (``journey``), the wire models (``events``, ``downlinks``, ``topics``) and the
configuration models (``settings``) come together in ``store.StoreCore``. Nothing beneath this
package opens a socket, a file or a database, starts a thread or reads the clock:
``tests/test_architecture.py`` follows every import down to make sure.
"""
