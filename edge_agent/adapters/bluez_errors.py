"""What a failed scanner start means, in the words a technician needs.

bleak passes on what D-Bus and BlueZ raise as they come: a box without dbus gives
``[Errno 2] No such file or directory``, one without bluetoothd a D-Bus ``ServiceUnknown``, a
pulled dongle ``adapter 'hci0' not found``. ``explain`` names the fault and what to check; the
scanner keeps it as its health's ``reason`` and logs it (``adapters.ble``).
"""

from __future__ import annotations

import errno
import os

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)
from dbus_fast.errors import DBusFastError, InvalidAddressError

# libdbus' and dbus-fast's default when DBUS_SYSTEM_BUS_ADDRESS is not set.
DEFAULT_SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"
# What bleak's start may raise when D-Bus or BlueZ are missing or misbehave: the scanner
# retries these; anything else is a bug and ends the BLE runtime, with a traceback.
START_ERRORS = (BleakError, OSError, EOFError, DBusFastError)

_BUS_GONE = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR}
_NO_BLUEZ = {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"}
_NOT_AVAILABLE = {
    BleakBluetoothNotAvailableReason.NO_BLUETOOTH: "no Bluetooth adapter",
    BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE: "the adapter cannot scan for BLE (central role)",
    BleakBluetoothNotAvailableReason.POWERED_OFF: "the adapter is powered off",
    BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM: "the system bus refused this user",
}


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


def explain(exc: BaseException, adapter: str) -> str:
    """One line on why a scan on ``adapter`` could not start."""
    bus = system_bus_address()
    if isinstance(exc, OSError) and exc.errno in _BUS_GONE:
        return f"no D-Bus system bus at {bus} (is dbus running? is bluetoothd installed?)"
    if isinstance(exc, PermissionError):
        return f"not allowed to open the D-Bus system bus at {bus} (run as a user that may)"
    if isinstance(exc, InvalidAddressError):
        return f"D-Bus system bus address {bus!r} is not valid (DBUS_SYSTEM_BUS_ADDRESS)"
    if isinstance(exc, EOFError):
        return f"the D-Bus system bus at {bus} closed the connection (dbus restarted?)"
    if isinstance(exc, BleakDBusError):
        return _dbus_error(exc, adapter)
    if isinstance(exc, BleakBluetoothNotAvailableError):
        return f"Bluetooth not available: {_NOT_AVAILABLE.get(exc.reason, str(exc.args[0]))}"
    if isinstance(exc, BleakError) and str(exc) == f"adapter '{adapter}' not found":
        return f"adapter {adapter} not found (unplugged? `bluetoothctl list` shows the adapters)"
    return f"{type(exc).__name__}: {exc}"


def _dbus_error(exc: BleakDBusError, adapter: str) -> str:
    name = exc.dbus_error
    if name in _NO_BLUEZ:
        return "BlueZ not running (org.bluez not on the bus: is bluetoothd installed and started?)"
    if name == "org.freedesktop.DBus.Error.AccessDenied":
        return "D-Bus policy denies this user BlueZ (run as root or a member of the bluetooth group)"
    if name == "org.bluez.Error.NotReady":
        return f"adapter {adapter} not ready (powered off or blocked by rfkill?)"
    if name == "org.bluez.Error.InProgress":
        return f"adapter {adapter} busy: BlueZ says a discovery is already in progress"
    return f"BlueZ refused: {name}" + (f" ({exc.dbus_error_details})" if exc.dbus_error_details else "")
