#!/usr/bin/env bash
# Install edge-agent with the demo's embedded broker and run a synthetic store day through it.
# Extra arguments go to `edge-agent demo` (e.g. --broker HOST:PORT, --shoppers N, --seed N).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh '.[demo]'
exec .venv/bin/edge-agent demo "$@"
