"""The daemon: the one assembly of database, outbox, pipeline, link and sources
(``assembly``), the pipeline they share with replay and the demo (``pipeline``), and the
service that runs them (``service``: main loop, scheduler, signals, reload)."""
