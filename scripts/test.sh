#!/usr/bin/env bash
# Install everything the tests need (mosquitto from Debian, the package with its test extras),
# then lint, type-check (mypy, strict for the core) and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# mosquitto: the real broker the MQTT tests start. dbus: the private bus for the fake BlueZ.
# systemd: systemd-analyze, which checks the unit (no running systemd needed).
# libdbus-1-dev, libglib2.0-dev, pkg-config: dbus-python (python-dbusmock's binding) has no wheel.
missing=()
{ command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null 2>&1 || missing+=(mosquitto)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# chromium: the real headless browser the HTML journey report is rendered and checked in.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# postgresql: the server HQ's PostgreSQL tests start (initdb into a temporary directory, on a
# free port). The package's own cluster stays down where policy-rc.d forbids starting services
# (CI containers), and the tests never use it.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# faketime: libfaketime, which moves one process's wall clock for the clock-step fault rows;
# gcc: compiles, at test time, the small shim those rows preload before it (tests/faketime.py).
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(faketime)  # any architecture
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
if command -v pkg-config >/dev/null 2>&1; then
  pkg-config --exists dbus-1 || missing+=(libdbus-1-dev)
  pkg-config --exists glib-2.0 || missing+=(libglib2.0-dev)
else
  missing+=(libdbus-1-dev libglib2.0-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing from Debian: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
source scripts/venv.sh '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
