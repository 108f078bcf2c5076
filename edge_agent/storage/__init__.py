"""The store's durable state in one SQLite file: the database and its full-disk routine
(``database``), the outbox every message waits in until HQ has it (``outbox``), and what HQ sent
(``state``). Imports the core, never an adapter."""
