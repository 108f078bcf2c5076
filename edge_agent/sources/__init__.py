"""Where sightings come from: local adapters (bleak), remote receivers (MQTT), traces."""
