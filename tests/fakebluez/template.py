"""python-dbusmock template: BlueZ 5 as bleak sees it, with advertising devices and GATT.

Extends dbusmock's ``bluez5`` template where it falls short for bleak (shared/notes/fake-bluez.md):
- devices are added with BlueZ's real property signatures (``ManufacturerData`` as ``a{qv}``,
  ``ServiceData`` as ``a{sv}``, ``RSSI`` as Int16); the template's own ``AddDevice`` declares
  them wrongly and bleak's handler silently drops every callback;
- ``Advertise`` changes a device's advertisement like a new packet would (PropertiesChanged);
- ``AddGattCharacteristic`` adds a readable characteristic at BlueZ's path format
  (``.../serviceXXXX/charXXXX``), and ``Connect`` sets ``ServicesResolved`` as BlueZ does;
- ``Disconnect`` and device removal set ``Connected=False`` first, as BlueZ does.
"""

from __future__ import annotations

import dbus
import dbusmock
from dbusmock import mockobject
from dbusmock.templates import bluez5
from dbusmock.templates.bluez5 import *  # noqa: F403 - a template module re-exports its base

BLUEZ_MOCK_IFACE = bluez5.BLUEZ_MOCK_IFACE
DEVICE_IFACE = bluez5.DEVICE_IFACE
OBJECT_MANAGER_IFACE = bluez5.OBJECT_MANAGER_IFACE
GATT_SERVICE_IFACE = "org.bluez.GattService1"
GATT_CHARACTERISTIC_IFACE = "org.bluez.GattCharacteristic1"


def load(mock, parameters):
    bluez5.load(mock, parameters)
    mock.AddMethods(
        BLUEZ_MOCK_IFACE,
        [
            ("AddAdvertiser", "ssna{qay}a{say}as", "s", _add_advertiser),
            ("Advertise", "ssna{qay}a{say}", "", _advertise),
            ("AddGattCharacteristic", "ssssay", "s", _add_characteristic),
            ("RemoveAdvertiser", "ss", "", _remove_advertiser),
            ("FailDiscovery", "ss", "", _fail_discovery),
            ("RestoreDiscovery", "s", "", _restore_discovery),
        ],
    )


def _fail_discovery(self, adapter, error_name):
    """StartDiscovery on ``adapter`` fails with ``error_name`` (InProgress, NotReady) until restored."""

    def refuse(adapter_object):
        raise dbus.exceptions.DBusException("refused by the test", name=str(error_name))

    mockobject.objects[f"/org/bluez/{adapter}"].AddMethods(
        bluez5.ADAPTER_IFACE, [("StartDiscovery", "", "", refuse)]
    )


def _restore_discovery(self, adapter):
    mockobject.objects[f"/org/bluez/{adapter}"].AddMethods(
        bluez5.ADAPTER_IFACE, [("StartDiscovery", "", "", bluez5.StartDiscovery)]
    )


def _device_path(adapter: str, address: str) -> str:
    return f"/org/bluez/{adapter}/dev_{address.replace(':', '_').upper()}"


def _manufacturer(data) -> dbus.Dictionary:
    return dbus.Dictionary(
        {dbus.UInt16(k): dbus.Array([dbus.Byte(b) for b in v], signature="y") for k, v in data.items()},
        signature="qv",
    )


def _service(data) -> dbus.Dictionary:
    return dbus.Dictionary(
        {str(k): dbus.Array([dbus.Byte(b) for b in v], signature="y") for k, v in data.items()},
        signature="sv",
    )


def _connect(device) -> None:
    device.UpdateProperties(
        DEVICE_IFACE, {"Connected": dbus.Boolean(True), "ServicesResolved": dbus.Boolean(True)}
    )


def _disconnect(device) -> None:
    device.UpdateProperties(
        DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(False), "Connected": dbus.Boolean(False)}
    )


def _add_advertiser(self, adapter, address, rssi, manufacturer, service, uuids):
    adapter_path = f"/org/bluez/{adapter}"
    if adapter_path not in mockobject.objects:
        raise dbus.exceptions.DBusException(f"no adapter {adapter}", name=BLUEZ_MOCK_IFACE + ".NoSuchAdapter")
    path = _device_path(adapter, address)
    properties = {
        "Address": dbus.String(address),
        "AddressType": dbus.String("random"),
        "Alias": dbus.String(address.replace(":", "-")),
        "Adapter": dbus.ObjectPath(adapter_path),
        "UUIDs": dbus.Array([str(u) for u in uuids], signature="s"),
        "Paired": dbus.Boolean(False),
        "Bonded": dbus.Boolean(False),
        "Trusted": dbus.Boolean(False),
        "Blocked": dbus.Boolean(False),
        "Connected": dbus.Boolean(False),
        "ServicesResolved": dbus.Boolean(False),
        "LegacyPairing": dbus.Boolean(False),
        "RSSI": dbus.Int16(rssi),
        "ManufacturerData": _manufacturer(manufacturer),
        "ServiceData": _service(service),
    }
    self.AddObject(
        path, DEVICE_IFACE, properties,
        [("Connect", "", "", _connect), ("Disconnect", "", "", _disconnect),
         ("Pair", "", "", ""), ("CancelPairing", "", "", "")],
    )  # fmt: skip
    mockobject.objects["/"].EmitSignal(
        OBJECT_MANAGER_IFACE,
        "InterfacesAdded",
        "oa{sa{sv}}",
        [dbus.ObjectPath(path), {DEVICE_IFACE: properties}],
    )
    return path


def _advertise(self, adapter, address, rssi, manufacturer, service):
    device = mockobject.objects[_device_path(adapter, address)]
    changes = {"RSSI": dbus.Int16(rssi)}
    if manufacturer:
        changes["ManufacturerData"] = _manufacturer(manufacturer)
    if service:
        changes["ServiceData"] = _service(service)
    device.UpdateProperties(DEVICE_IFACE, changes)


def _remove_advertiser(self, adapter, address):
    path = _device_path(adapter, address)
    device = mockobject.objects[path]
    device.UpdateProperties(DEVICE_IFACE, {"Connected": dbus.Boolean(False)})
    self.RemoveObject(path)
    mockobject.objects["/"].EmitSignal(
        OBJECT_MANAGER_IFACE, "InterfacesRemoved", "oas", [dbus.ObjectPath(path), [DEVICE_IFACE]]
    )


def _add_characteristic(self, adapter, address, service_uuid, char_uuid, value):
    device_path = _device_path(adapter, address)
    service_path = f"{device_path}/service0010"
    char_path = f"{service_path}/char0011"
    if service_path not in mockobject.objects:
        service_props = {"UUID": dbus.String(service_uuid), "Device": dbus.ObjectPath(device_path),
                         "Primary": dbus.Boolean(True), "Handle": dbus.UInt16(0x10)}  # fmt: skip
        self.AddObject(service_path, GATT_SERVICE_IFACE, service_props, [])
        mockobject.objects["/"].EmitSignal(
            OBJECT_MANAGER_IFACE, "InterfacesAdded", "oa{sa{sv}}",
            [dbus.ObjectPath(service_path), {GATT_SERVICE_IFACE: service_props}],
        )  # fmt: skip
    char_props = {
        "UUID": dbus.String(char_uuid),
        "Service": dbus.ObjectPath(service_path),
        "Value": dbus.Array([dbus.Byte(b) for b in value], signature="y"),
        "Flags": dbus.Array(["read"], signature="s"),
        "Handle": dbus.UInt16(0x11),
    }
    self.AddObject(
        char_path, GATT_CHARACTERISTIC_IFACE, char_props,
        [("ReadValue", "a{sv}", "ay", "ret = self.Get('org.bluez.GattCharacteristic1', 'Value')")],
    )  # fmt: skip
    mockobject.objects["/"].EmitSignal(
        OBJECT_MANAGER_IFACE, "InterfacesAdded", "oa{sa{sv}}",
        [dbus.ObjectPath(char_path), {GATT_CHARACTERISTIC_IFACE: char_props}],
    )  # fmt: skip
    return char_path


__all__ = ["BUS_NAME", "MAIN_OBJ", "SYSTEM_BUS", "dbusmock", "load"]  # noqa: F405
