"""Allow ``python -m edge_agent``."""

from edge_agent.cli import main

if __name__ == "__main__":  # spawned worker processes (simulate-fleet) import this module too
    raise SystemExit(main())
