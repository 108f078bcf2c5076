"""Thin adapters between the core and the world: bleak scanners and GATT reads (``ble``,
``gatt``), the MQTT link to HQ (``link``), remote receivers on the store's MQTT (``remote``),
systemd's notify socket (``sdnotify``), the configuration file (``configfile``) and OpenSSL's
AES (``aes_openssl``). Each takes its own settings section and a clock."""
