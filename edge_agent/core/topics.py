"""The MQTT topic contract (DESIGN §5), built and parsed in one place."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.core.downlinks.registry import DOWNLINKS

# The levels a downlink topic may end in (``.../in/<kind>``), as the registry declares them.
DOWNLINK_KINDS: tuple[str, ...] = DOWNLINKS.kinds


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    store_id: str

    @property
    def store_root(self) -> str:
        return f"{self.prefix}/stores/{self.store_id}"

    def uplink(self, stream: str) -> str:
        """``stream`` is ``events/<kind>``, ``notifications``, ``status`` or ``errors``."""
        return f"{self.store_root}/{stream}"

    def stream_of(self, topic: str) -> str:
        """The stream an uplink topic of this store names, whatever its prefix (rows queued
        under an earlier ``topic_prefix`` keep their stream)."""
        parsed = self.store_and_stream(topic)
        return parsed[1] if parsed is not None and parsed[0] == self.store_id else topic

    @staticmethod
    def store_and_stream(topic: str) -> tuple[str, str] | None:
        """``(store id, stream)`` of any store's topic, as HQ reads the feed (``stream`` is what
        follows the store: ``events/visit``, ``status``, ``in/orders``...), else None."""
        _, found, rest = topic.partition("/stores/")
        store_id, slash, stream = rest.partition("/")
        return (store_id, stream) if found and slash and store_id and stream else None

    @property
    def status(self) -> str:
        return self.uplink("status")

    @property
    def downlink_filters(self) -> tuple[str, str]:
        return f"{self.store_root}/in/+", f"{self.prefix}/fleet/in/+"

    def sightings(self, receiver: str = "+") -> str:
        """Where remote receivers publish sightings in the generic format."""
        return f"{self.store_root}/sightings/{receiver}"

    def sightings_receiver(self, topic: str) -> str | None:
        root = f"{self.store_root}/sightings/"
        receiver = topic[len(root) :] if topic.startswith(root) else ""
        return receiver if receiver and "/" not in receiver else None

    def downlink(self, kind: str, fleet: bool = False) -> str:
        return f"{self.prefix}/fleet/in/{kind}" if fleet else f"{self.store_root}/in/{kind}"

    def downlink_kind(self, topic: str) -> str | None:
        """The kind named by a downlink topic of this store or the fleet, else None."""
        for root in (f"{self.store_root}/in/", f"{self.prefix}/fleet/in/"):
            if topic.startswith(root):
                kind = topic[len(root) :]
                return kind if kind and "/" not in kind else None
        return None

    @staticmethod
    def espresense(espresense_prefix: str) -> str:
        """The filter for what ESPresense nodes publish: ``{prefix}/devices/{device}/{room}``."""
        return f"{espresense_prefix}/devices/+/+"

    @staticmethod
    def espresense_room(topic: str, espresense_prefix: str) -> str | None:
        """The room (the receiver id) an ESPresense topic ends in, or None if it is not one."""
        root = f"{espresense_prefix}/devices/"
        return topic.rsplit("/", 1)[-1] if topic.startswith(root) else None
