#!/usr/bin/env bash
# Install (or upgrade) edge-agent as a systemd service on a store device. Run as root:
#   sudo ./scripts/install.sh
# It creates the static user edge-agent (in the bluetooth group, which BlueZ's D-Bus policy
# trusts), a virtualenv in /opt/edge-agent, /etc/edge-agent/agent.toml from the example (never
# overwriting an existing one) and the unit; then tells you what to edit before starting.
#
#   DESTDIR=/some/root ./scripts/install.sh
# only lays out the configuration, documentation and unit under that root (packaging, tests):
# no user, no virtualenv (a venv is not relocatable) and no systemctl.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR="${DESTDIR:-}"
PYTHON="${PYTHON:-python3}"
PREFIX=/opt/edge-agent
CONF_DIR=/etc/edge-agent
UNIT_DIR=/etc/systemd/system

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "run as root (sudo $0), or set DESTDIR to lay the files out elsewhere" >&2
  exit 1
fi

if [ -z "$DESTDIR" ]; then
  getent group bluetooth >/dev/null || groupadd --system bluetooth
  if ! id edge-agent >/dev/null 2>&1; then
    useradd --system --user-group --groups bluetooth --home-dir /var/lib/edge-agent \
      --no-create-home --shell /usr/sbin/nologin edge-agent
  fi
fi

install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$UNIT_DIR"
install -d -m 0750 "$DESTDIR$CONF_DIR"
install -m 0644 README.md "$DESTDIR$PREFIX/README.md"
if [ ! -e "$DESTDIR$CONF_DIR/agent.toml" ]; then
  install -m 0640 config/example.toml "$DESTDIR$CONF_DIR/agent.toml"
  fresh_config=1
else
  fresh_config=0
fi
install -m 0644 systemd/edge-agent.service "$DESTDIR$UNIT_DIR/edge-agent.service"

if [ -n "$DESTDIR" ]; then
  echo "laid out under $DESTDIR (no user, virtualenv or systemctl with DESTDIR)"
  exit 0
fi

chown root:edge-agent "$CONF_DIR" "$CONF_DIR/agent.toml"
"$PYTHON" -m venv "$PREFIX/.venv"
"$PREFIX/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$PREFIX/.venv/bin/python" -m pip install --quiet --disable-pip-version-check .
# A virtualenv only links to its interpreter: one under a private home (/root/.pyenv, say) would
# install fine and then fail at every start of the unit.
if ! runuser -u edge-agent -- "$PREFIX/.venv/bin/edge-agent" --version >/dev/null 2>&1; then
  echo "the edge-agent user cannot run $PREFIX/.venv/bin/edge-agent: is $PYTHON under a private" >&2
  echo "directory? Install again with a system Python, e.g. PYTHON=/usr/bin/python3 $0" >&2
  exit 1
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed edge-agent $("$PREFIX/.venv/bin/edge-agent" --version | cut -d' ' -f2)"
if [ "$fresh_config" = 1 ]; then
  echo "next: edit $CONF_DIR/agent.toml (store.id, receivers, mqtt), then:"
else
  echo "kept your $CONF_DIR/agent.toml; check it against this version:"
fi
echo "  $PREFIX/.venv/bin/edge-agent config check $CONF_DIR/agent.toml"
echo "  systemctl enable --now edge-agent"
