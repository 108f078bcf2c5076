"""A private system bus with the fake BlueZ on it, and a handle to drive it from tests."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import dbus
import dbus.bus
from dbusmock import BusType, PrivateDBus, SpawnedMock

TEMPLATE = str(Path(__file__).with_name("template.py"))


class FakeBluez:
    def __init__(self, address: str) -> None:
        # Never dbus.SystemBus(): a process-wide singleton bound to the first bus it saw.
        self._bus = dbus.bus.BusConnection(address)
        self._mock = dbus.Interface(self._bus.get_object("org.bluez", "/"), "org.bluez.Mock")

    def add_adapter(self, name: str = "hci0") -> None:
        self._mock.AddAdapter(name, "edge-agent-test")

    def remove_adapter(self, name: str = "hci0") -> None:
        self._mock.RemoveAdapterWithDevices(name)

    def add_advertiser(
        self,
        address: str,
        rssi: int = -60,
        manufacturer: Mapping[int, bytes] | None = None,
        service: Mapping[str, bytes] | None = None,
        uuids: Sequence[str] = (),
        adapter: str = "hci0",
    ) -> None:
        self._mock.AddAdvertiser(
            adapter, address, rssi, _manufacturer(manufacturer), _service(service),
            dbus.Array(list(uuids), signature="s"),
        )  # fmt: skip

    def advertise(
        self,
        address: str,
        rssi: int,
        manufacturer: Mapping[int, bytes] | None = None,
        service: Mapping[str, bytes] | None = None,
        adapter: str = "hci0",
    ) -> None:
        """A new advertisement from ``address``: what BlueZ reports as a PropertiesChanged."""
        self._mock.Advertise(adapter, address, rssi, _manufacturer(manufacturer), _service(service))

    def fail_discovery(self, error_name: str, adapter: str = "hci0") -> None:
        self._mock.FailDiscovery(adapter, error_name)

    def restore_discovery(self, adapter: str = "hci0") -> None:
        self._mock.RestoreDiscovery(adapter)

    def discovering(self, adapter: str = "hci0") -> bool:
        """Whether some client (bleak, here) has discovery running on the adapter."""
        try:
            props = dbus.Interface(
                self._bus.get_object("org.bluez", f"/org/bluez/{adapter}"), dbus.PROPERTIES_IFACE
            )
            return bool(props.Get("org.bluez.Adapter1", "Discovering"))
        except dbus.exceptions.DBusException:
            return False

    def add_characteristic(self, address: str, service_uuid: str, char_uuid: str, value: bytes) -> None:
        self._mock.AddGattCharacteristic("hci0", address, service_uuid, char_uuid, dbus.ByteArray(value))

    def close(self) -> None:
        self._bus.close()


def _manufacturer(data: Mapping[int, bytes] | None) -> dbus.Dictionary:
    return dbus.Dictionary(
        {dbus.UInt16(k): dbus.ByteArray(v) for k, v in (data or {}).items()}, signature="qay"
    )


def _service(data: Mapping[str, bytes] | None) -> dbus.Dictionary:
    return dbus.Dictionary({k: dbus.ByteArray(v) for k, v in (data or {}).items()}, signature="say")


@contextmanager
def fake_bluez(passive_capable: bool = True) -> Iterator[FakeBluez]:
    """``passive_capable=False``: adapters without BlueZ's advertisement-monitor API."""
    saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    with PrivateDBus(BusType.SYSTEM) as bus:  # sets DBUS_SYSTEM_BUS_ADDRESS, which bleak honours
        mock = SpawnedMock.spawn_with_template(
            TEMPLATE, {"enable_monitor_api": passive_capable}, bustype=BusType.SYSTEM
        )
        handle = FakeBluez(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
        try:
            handle.add_adapter()
            yield handle
        finally:
            handle.close()
            mock.terminate()
    _ = bus
    if saved is None:
        os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    else:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved
