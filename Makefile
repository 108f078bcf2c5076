# The README's two commands are `make demo` and `make test`; each installs what it needs.
.PHONY: demo test faults bench install lint clean readme

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

# The fault-injection tests alone, with their delivered/lost/duplicated table (make test runs them too).
faults:
	./scripts/test.sh -m faults -s

# The README's example output, from a run of the demo (tests/test_readme.py checks it).
readme:
	.venv/bin/python -m edge_agent.tools.readme

bench:
	./scripts/bench.sh

install:
	./scripts/install.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

clean:
	rm -rf .venv .pytest_cache .ruff_cache .hypothesis build *.egg-info benchmarks/results
