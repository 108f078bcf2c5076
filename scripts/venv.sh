# Sourced by the other scripts: make .venv (Python >= 3.11) and install the project into it.
# Usage: source scripts/venv.sh '.[extra]'
# The install runs again only when pyproject.toml (what it installs) has changed since the last
# one for that extra, so an everyday `make test` neither waits for pip nor prints its banners.
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "edge-agent needs Python 3.11 or newer as '$PYTHON' (set PYTHON=... to choose another)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || { echo "python3 -m venv failed: on Debian, apt-get install python3-venv" >&2; exit 1; }
fi
_stamp=".venv/.installed-$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '_')"
_want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$1"
  printf '%s\n' "$_want" > "$_stamp"
fi
unset _stamp _want
