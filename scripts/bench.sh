#!/usr/bin/env bash
# Run the benchmarks: prints a table, writes benchmarks/results/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh '.[test]'
exec .venv/bin/python -m benchmarks "$@"
